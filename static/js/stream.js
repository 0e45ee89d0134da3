// The run's websocket (DESIGN §6): frames in order, an end message, controls out.
// Flow control: the server sends at most a window of frames past our last ack, so we ack
// a frame once it has been handled (played, for a live view). A dropped socket reconnects
// with ?after=<last seq received>, so no frame is lost or repeated.

const RETRY_MS = [250, 500, 1000, 2000, 4000];

export class RunStream {
  /**
   * @param path the run's ws path (/ws/runs/<id>/)
   * @param handlers {onFrame(frame), onEnd(message), onError(message), onStatus(text)}
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.lastSeq = 0;    // highest frame received
    this.ackedSeq = 0;   // highest frame acknowledged
    this.ended = false;
    this.closed = false;
    this.retries = 0;
    this.socket = null;
    this.queue = [];     // controls sent while reconnecting
  }

  open(after = 0) {
    this.lastSeq = Math.max(this.lastSeq, after);
    this.ackedSeq = Math.max(this.ackedSeq, after);
    this._connect();
    return this;
  }

  _connect() {
    const sep = this.url.includes("?") ? "&" : "?";
    const socket = new WebSocket(`${this.url}${sep}after=${this.lastSeq}`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.retries = 0;
      this.handlers.onStatus?.("connected");
      for (const message of this.queue.splice(0)) socket.send(JSON.stringify(message));
    });
    socket.addEventListener("message", (ev) => this._message(ev.data));
    socket.addEventListener("close", (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.ended || this.closed) return;
      if (ev.code === 4404) {
        this.handlers.onError?.({error: "this run does not exist"});
        return;
      }
      const wait = RETRY_MS[Math.min(this.retries, RETRY_MS.length - 1)];
      this.retries += 1;
      this.handlers.onStatus?.(`reconnecting in ${wait} ms`);
      setTimeout(() => { if (!this.closed) this._connect(); }, wait);
    });
  }

  _message(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof message.seq === "number" && Array.isArray(message.events)) {
      if (message.seq <= this.lastSeq) return; // already held (after a reconnect)
      this.lastSeq = message.seq;
      this.handlers.onFrame?.(message);
    } else if (message.type === "end") {
      this.ended = true;
      this.handlers.onEnd?.(message);
    } else if (message.type === "error") {
      this.handlers.onError?.(message);
    }
  }

  /** Tell the server every frame up to seq has been handled. */
  ack(seq) {
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = seq;
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({action: "ack", seq}));
    }
  }

  /** pause | resume | stop | {speed} | {inject}: queued while reconnecting. */
  send(message) {
    if (this.ended) return;
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
    else this.queue.push(message);
  }

  close() {
    this.closed = true;
    this.socket?.close();
    this.socket = null;
  }
}
