// A level meter for a MediaStream: WebAudio AnalyserNode → RMS bar and a falling peak mark,
// in dBFS from -60 to 0, drawn once per animation frame.
const FLOOR_DB = -60;
const PEAK_HOLD_MS = 800;
const PEAK_FALL_DB_PER_S = 20;
export const CLIP_DB = -1;

function toDb(x) {
  return x > 0 ? Math.max(FLOOR_DB, 20 * Math.log10(x)) : FLOOR_DB;
}

function percent(db) {
  return ((db - FLOOR_DB) / -FLOOR_DB) * 100;
}

/** One AudioContext per page: browsers allow only a few, and it must start from a tap. */
let context = null;
export function audioContext() {
  if (!context) context = new (globalThis.AudioContext || globalThis.webkitAudioContext)();
  if (context.state === "suspended") context.resume().catch(() => {});
  return context;
}

export class LevelMeter {
  /** root: the .meter element; onLevel(rmsDb, peakDb) is called every frame (optional). */
  constructor(root, onLevel = null) {
    this.root = root;
    this.bar = root.querySelector(".meter-bar");
    this.rmsBar = root.querySelector(".meter-rms");
    this.peakMark = root.querySelector(".meter-peak");
    this.onLevel = onLevel;
    this.source = null;
    this.analyser = null;
    this.frame = 0;
    this.peakDb = FLOOR_DB;
    this.peakAt = 0;
    this.lastNow = null;
  }

  attach(stream) {
    this.detach();
    const ctx = audioContext();
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 2048;
    this.source = ctx.createMediaStreamSource(stream);
    this.source.connect(this.analyser); // not to the speakers: a meter, never a monitor
    this.samples = new Float32Array(this.analyser.fftSize);
    this.root.dataset.state = "on";
    const draw = (now) => {
      this.frame = requestAnimationFrame(draw);
      this.update(now);
    };
    this.frame = requestAnimationFrame(draw);
  }

  update(now) {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    let peak = 0;
    for (const s of this.samples) {
      sum += s * s;
      const a = Math.abs(s);
      if (a > peak) peak = a;
    }
    const rmsDb = toDb(Math.sqrt(sum / this.samples.length));
    const instant = toDb(peak);
    const dt = Math.min(100, Math.max(0, now - (this.lastNow ?? now)));
    this.lastNow = now;
    if (instant >= this.peakDb) {
      this.peakDb = instant;
      this.peakAt = now;
    } else if (now - this.peakAt > PEAK_HOLD_MS) {
      this.peakDb = Math.max(instant, this.peakDb - (PEAK_FALL_DB_PER_S * dt) / 1000);
    }
    this.rmsBar.style.width = `${percent(rmsDb)}%`;
    this.peakMark.style.left = `${percent(this.peakDb)}%`;
    this.bar.setAttribute("aria-valuenow", String(Math.round(rmsDb)));
    this.onLevel?.(rmsDb, instant);
  }

  detach() {
    cancelAnimationFrame(this.frame);
    this.source?.disconnect();
    this.source = null;
    this.analyser = null;
    this.peakDb = FLOOR_DB;
    this.root.dataset.state = "off";
    this.rmsBar.style.width = "0%";
    this.peakMark.style.left = "0%";
    this.bar.setAttribute("aria-valuenow", String(FLOOR_DB));
  }
}
