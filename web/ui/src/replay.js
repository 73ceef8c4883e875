// Replay: a time slider over the last hour, with play/pause and speed. While
// replaying, the live feed is ignored; "Live" returns to it.
import { fmtClock } from './format.js';

export class Replay {
  constructor({ slider, play, speed, time, live, msg, load, onFrame, onEnter, onExit }) {
    Object.assign(this, { slider, play, speed, time, live, msg, load, onFrame, onEnter, onExit });
    this.active = false;
    this.playing = false;
    this.timer = null;
    this.seq = 0;
    this.base = Date.now(); // the "now" the slider is relative to, fixed while replaying
    this.live.disabled = true;
    slider.addEventListener('input', () => { this._enter(); this._pause(); this._show(); });
    slider.addEventListener('change', () => { this._enter(); this._fetch(); });
    play.addEventListener('click', () => (this.playing ? this._pause() : this._play()));
    live.addEventListener('click', () => this.exit());
  }

  _at() { return new Date(this.base + Number(this.slider.value) * 1000); }

  _show() { this.time.textContent = this.active ? fmtClock(this._at()) : 'live'; }

  _enter() {
    if (this.active) return;
    this.active = true;
    this.base = Date.now();
    this.live.disabled = false;
    this.onEnter();
  }

  exit() {
    if (!this.active) return;
    this._pause();
    this.active = false;
    this.seq++;
    this.slider.value = 0;
    this.live.disabled = true;
    this.msg.textContent = '';
    this._show();
    this.onExit();
  }

  _play() {
    this._enter();
    if (Number(this.slider.value) >= 0) this.slider.value = this.slider.min;
    this.playing = true;
    this.play.textContent = '⏸';
    this.play.setAttribute('aria-label', 'Pause');
    this._step();
  }

  _pause() {
    this.playing = false;
    clearTimeout(this.timer);
    this.play.textContent = '▶';
    this.play.setAttribute('aria-label', 'Play');
  }

  async _step() {
    if (!this.playing) return;
    const ok = await this._fetch();
    if (!this.playing) return;
    const v = Number(this.slider.value) + Number(this.slider.step);
    if (!ok || v > 0) { this._pause(); return; }
    this.slider.value = v;
    this.timer = setTimeout(() => this._step(), 1000 / Number(this.speed.value));
  }

  /** Refetches the frame at the slider (view or filters changed while replaying). */
  refresh() { if (this.active) this._fetch(); }

  async _fetch() {
    const seq = ++this.seq;
    this._show();
    try {
      const g = await this.load(this._at().toISOString());
      if (seq !== this.seq || !this.active) return false;
      this.msg.textContent = '';
      this.onFrame(g);
      return true;
    } catch (err) {
      if (seq !== this.seq) return false;
      this.msg.textContent = err.notAvailable ? 'Replay is not available on this server.' : `No data for this time: ${err.message}`;
      return false;
    }
  }
}
