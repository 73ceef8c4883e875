package graph

import (
	"fmt"
	"slices"
	"strings"
)

// ParseNodeID parses an ID made by Node.ID.
func ParseNodeID(id string) (Node, error) {
	parts := strings.Split(id, "|")
	if len(parts) != 7 {
		return Node{}, fmt.Errorf("node id %q: want 7 |-separated parts, got %d", id, len(parts))
	}
	k, err := ParseKind(parts[0])
	if err != nil {
		return Node{}, fmt.Errorf("node id %q: %w", id, err)
	}
	return Node{Kind: k, Cluster: parts[1], Namespace: parts[2], Workload: parts[3], App: parts[4], Version: parts[5], Service: parts[6]}, nil
}

// Namespaces lists the namespaces of every node the graph holds, sorted.
func (g *Graph) Namespaces() []string {
	g.mu.RLock()
	seen := make(map[string]bool)
	for n := range g.nodes {
		if n.Namespace != "" {
			seen[n.Namespace] = true
		}
	}
	g.mu.RUnlock()
	out := make([]string, 0, len(seen))
	for ns := range seen {
		out = append(out, ns)
	}
	slices.Sort(out)
	return out
}
