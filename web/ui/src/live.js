// The live feed: one websocket to /api/v1/live, re-opened with backoff when it
// drops. It reports its state (connecting, live, reconnecting) and hands every
// message to onMessage.
import { backoffDelay } from './backoff.js';

export class LiveFeed {
  constructor({ url, onMessage, onState, subscription }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.subscription = subscription; // () => subscribe message
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.state = 'idle';
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this._open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    this._set('idle');
  }

  /** Sends the current subscription again (view, namespaces or window changed). */
  resubscribe() {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(this.subscription()));
  }

  _set(state, detail) {
    this.state = state;
    this.onState?.(state, detail);
  }

  _open() {
    this._set(this.attempt === 0 ? 'connecting' : 'reconnecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this._set('live');
      ws.send(JSON.stringify(this.subscription()));
    };
    ws.onmessage = (ev) => {
      const received = performance.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; } // ignore what is not JSON
      if (msg && typeof msg === 'object') this.onMessage(msg, received);
    };
    ws.onerror = () => { /* onclose follows and decides */ };
    ws.onclose = () => {
      this.ws = null;
      if (!this.stopped) this._retry();
    };
  }

  _retry() {
    const delay = backoffDelay(this.attempt++);
    this._set('reconnecting', { delay });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { if (!this.stopped) this._open(); }, delay);
  }
}

export function liveURL(loc = window.location) {
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/api/v1/live';
}
