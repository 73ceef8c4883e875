// A minimal WebSocket server side (RFC 6455) for the mock API: text frames,
// ping/pong and close. Enough for the dashboard; no dependency needed.
import crypto from 'node:crypto';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptUpgrade(req, socket, onMessage) {
  const key = req.headers['sec-websocket-key'];
  if (!key) { socket.destroy(); return null; }
  const accept = crypto.createHash('sha1').update(key + GUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  socket.setNoDelay(true);
  let buf = Buffer.alloc(0);
  const conn = {
    open: true,
    send(obj) {
      if (!conn.open) return;
      socket.write(frame(0x1, Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj))));
    },
    close() {
      if (!conn.open) return;
      conn.open = false;
      socket.end(frame(0x8, Buffer.alloc(0)));
    },
    drop() { conn.open = false; socket.destroy(); },
  };
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const f = parse(buf);
      if (!f) break;
      buf = buf.subarray(f.size);
      if (f.opcode === 0x1) { try { onMessage?.(JSON.parse(f.payload.toString('utf8'))); } catch { /* not JSON */ } }
      else if (f.opcode === 0x8) conn.close();
      else if (f.opcode === 0x9) socket.write(frame(0xA, f.payload));
    }
  });
  socket.on('close', () => { conn.open = false; });
  socket.on('error', () => { conn.open = false; });
  return conn;
}

function frame(opcode, payload) {
  const n = payload.length;
  let head;
  if (n < 126) head = Buffer.from([0x80 | opcode, n]);
  else if (n < 65536) { head = Buffer.alloc(4); head[0] = 0x80 | opcode; head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2); }
  return Buffer.concat([head, payload]);
}

function parse(b) {
  if (b.length < 2) return null;
  const opcode = b[0] & 0x0f, masked = (b[1] & 0x80) !== 0;
  let len = b[1] & 0x7f, off = 2;
  if (len === 126) { if (b.length < 4) return null; len = b.readUInt16BE(2); off = 4; }
  else if (len === 127) { if (b.length < 10) return null; len = Number(b.readBigUInt64BE(2)); off = 10; }
  const maskOff = off;
  if (masked) off += 4;
  if (b.length < off + len) return null;
  const payload = Buffer.from(b.subarray(off, off + len));
  if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[maskOff + (i % 4)];
  return { opcode, payload, size: off + len };
}
