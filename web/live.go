package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshlens/meshlens/graph"
)

// The live feed: on connect a client gets a full snapshot, then a delta each
// time a bucket closes, plus anomaly/incident events as they happen.

const (
	liveSendBuffer = 64
	liveWriteWait  = 10 * time.Second
	livePingEvery  = 30 * time.Second
)

type subscription struct {
	View       string   `json:"view"`
	Namespaces []string `json:"namespaces"`
	Window     string   `json:"window"`
}

func (s subscription) key() string {
	return s.View + "|" + strings.Join(s.Namespaces, ",") + "|" + s.Window
}

type liveClient struct {
	conn *websocket.Conn
	send chan []byte

	mu    sync.Mutex
	sub   subscription
	nodes map[string][]byte // id -> element JSON last sent
	edges map[string][]byte
}

type hub struct {
	srv      *Server
	upgrader websocket.Upgrader

	mu      sync.Mutex
	clients map[*liveClient]struct{}
	closed  bool
	wg      sync.WaitGroup
}

func newHub(s *Server) *hub {
	return &hub{srv: s, clients: map[*liveClient]struct{}{},
		upgrader: websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 16384}}
}

func (h *hub) start() {
	h.mu.Lock()
	h.closed = false
	h.mu.Unlock()
}

func (h *hub) stop() {
	h.mu.Lock()
	h.closed = true
	for c := range h.clients {
		close(c.send)
		delete(h.clients, c)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

type liveMessage struct {
	Type    string         `json:"type"`
	Graph   *GraphJSON     `json:"graph,omitempty"`
	End     *time.Time     `json:"end,omitempty"`
	Added   *elementsDelta `json:"added,omitempty"`
	Updated *elementsDelta `json:"updated,omitempty"`
	Removed *removedDelta  `json:"removed,omitempty"`
	Payload any            `json:"payload,omitempty"`
	Error   string         `json:"error,omitempty"`
}

type elementsDelta struct {
	Nodes []json.RawMessage `json:"nodes"`
	Edges []json.RawMessage `json:"edges"`
}

type removedDelta struct {
	Nodes []string `json:"nodes"`
	Edges []string `json:"edges"`
}

func (h *hub) serveWS(w http.ResponseWriter, r *http.Request) {
	sub := subscription{View: r.URL.Query().Get("view"), Window: r.URL.Query().Get("window")}
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		sub.Namespaces = strings.Split(ns, ",")
	}
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	c := &liveClient{conn: conn, send: make(chan []byte, liveSendBuffer), sub: sub}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.Close()
		return
	}
	h.clients[c] = struct{}{}
	h.wg.Add(2)
	h.mu.Unlock()
	go h.writeLoop(c)
	go h.readLoop(c)
	h.sendSnapshot(c)
}

func (h *hub) drop(c *liveClient) {
	h.mu.Lock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.send)
	}
	h.mu.Unlock()
}

func (h *hub) enqueue(c *liveClient, msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; !ok {
		return
	}
	select {
	case c.send <- msg:
	default:
		// A client that cannot keep up is dropped; it reconnects and gets a fresh snapshot.
		delete(h.clients, c)
		close(c.send)
	}
}

func (h *hub) writeLoop(c *liveClient) {
	defer h.wg.Done()
	ping := time.NewTicker(livePingEvery)
	defer ping.Stop()
	defer c.conn.Close()
	for {
		select {
		case msg, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(liveWriteWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server closing"))
				return
			}
			if err := c.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				h.drop(c)
				return
			}
		case <-ping.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(liveWriteWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				h.drop(c)
				return
			}
		}
	}
}

func (h *hub) readLoop(c *liveClient) {
	defer h.wg.Done()
	c.conn.SetReadLimit(64 << 10)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			h.drop(c)
			return
		}
		var m struct {
			Type string `json:"type"`
			subscription
		}
		if err := json.Unmarshal(data, &m); err != nil || m.Type != "subscribe" {
			h.enqueue(c, mustJSON(liveMessage{Type: "error", Error: "want {\"type\":\"subscribe\",\"view\":...,\"namespaces\":[...],\"window\":\"5m\"}"}))
			continue
		}
		c.mu.Lock()
		c.sub = m.subscription
		c.nodes, c.edges = nil, nil
		c.mu.Unlock()
		h.sendSnapshot(c)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (h *hub) graphFor(sub subscription) (*GraphJSON, error) {
	vals := url.Values{}
	if sub.View != "" {
		vals["view"] = []string{sub.View}
	}
	if sub.Window != "" {
		vals["window"] = []string{sub.Window}
	}
	if len(sub.Namespaces) > 0 {
		vals["namespace"] = []string{strings.Join(sub.Namespaces, ",")}
	}
	q, err := h.srv.parseQuery(vals)
	if err != nil {
		return nil, err
	}
	snap, err := h.srv.snapshot(q)
	if err != nil {
		return nil, err
	}
	return toGraphJSON(snap, h.srv.opts.Health), nil
}

// sendSnapshot sends a full graph and remembers it as the client's base for deltas.
func (h *hub) sendSnapshot(c *liveClient) {
	c.mu.Lock()
	sub := c.sub
	c.mu.Unlock()
	g, err := h.graphFor(sub)
	if err != nil {
		h.enqueue(c, mustJSON(liveMessage{Type: "error", Error: err.Error()}))
		return
	}
	nodes, edges := indexElements(g)
	c.mu.Lock()
	c.nodes, c.edges = nodes, edges
	c.mu.Unlock()
	h.enqueue(c, mustJSON(liveMessage{Type: "snapshot", Graph: g}))
}

func indexElements(g *GraphJSON) (nodes, edges map[string][]byte) {
	nodes = make(map[string][]byte, len(g.Elements.Nodes))
	edges = make(map[string][]byte, len(g.Elements.Edges))
	for _, n := range g.Elements.Nodes {
		nodes[n.Data.ID] = mustJSON(n)
	}
	for _, e := range g.Elements.Edges {
		edges[e.Data.ID] = mustJSON(e)
	}
	return nodes, edges
}

func diff(old, cur map[string][]byte, added, updated *[]json.RawMessage, removed *[]string) {
	for id, b := range cur {
		prev, ok := old[id]
		switch {
		case !ok:
			*added = append(*added, b)
		case !bytes.Equal(prev, b):
			*updated = append(*updated, b)
		}
	}
	for id := range old {
		if _, ok := cur[id]; !ok {
			*removed = append(*removed, id)
		}
	}
}

func (h *hub) bucketClosed(ev graph.BucketClosed) {
	h.mu.Lock()
	clients := make([]*liveClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	// Clients with the same subscription share one snapshot and its encoded elements.
	type shared struct {
		g            *GraphJSON
		nodes, edges map[string][]byte
	}
	cache := map[string]*shared{}
	for _, c := range clients {
		c.mu.Lock()
		sub := c.sub
		c.mu.Unlock()
		sh, ok := cache[sub.key()]
		if !ok {
			g, err := h.graphFor(sub)
			if err != nil {
				h.enqueue(c, mustJSON(liveMessage{Type: "error", Error: err.Error()}))
				continue
			}
			sh = &shared{g: g}
			sh.nodes, sh.edges = indexElements(g)
			cache[sub.key()] = sh
		}
		g, nodes, edges := sh.g, sh.nodes, sh.edges
		msg := liveMessage{Type: "delta", End: &g.End,
			Added:   &elementsDelta{Nodes: []json.RawMessage{}, Edges: []json.RawMessage{}},
			Updated: &elementsDelta{Nodes: []json.RawMessage{}, Edges: []json.RawMessage{}},
			Removed: &removedDelta{Nodes: []string{}, Edges: []string{}}}
		c.mu.Lock()
		diff(c.nodes, nodes, &msg.Added.Nodes, &msg.Updated.Nodes, &msg.Removed.Nodes)
		diff(c.edges, edges, &msg.Added.Edges, &msg.Updated.Edges, &msg.Removed.Edges)
		c.nodes, c.edges = nodes, edges
		c.mu.Unlock()
		h.enqueue(c, mustJSON(msg))
	}
}

func (h *hub) publish(kind string, payload any) {
	msg := mustJSON(liveMessage{Type: kind, Payload: payload})
	h.mu.Lock()
	clients := make([]*liveClient, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		h.enqueue(c, msg)
	}
}
