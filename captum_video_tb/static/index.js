// Relevance Video: the captum_video TensorBoard plugin frontend.
//
// TensorBoard loads this ES module into a same-origin iframe whose <base> is
// /data/plugin/captum_video/ and calls render() once. Everything is plain DOM and <canvas>,
// with no dependencies and no build step (TensorBoard's CSP allows same-origin scripts only).
// Relevance frames arrive as 8-bit greyscale PNGs scaled over the whole clip; the colour map,
// the blend with the original frame, the part (joint / spatial / temporal) and the opacity are
// applied here, per pixel, so changing them needs no new request.

const COLORMAPS = {
  positive: 'positive relevance',
  absolute: '|relevance|',
  signed: 'signed (red + / blue -)',
};
// Piecewise-linear colour ramps [position, r, g, b]: warm for positive, cold for negative.
const WARM = [[0, 120, 0, 0], [0.4, 230, 30, 0], [0.7, 255, 160, 0], [1, 255, 255, 120]];
const COLD = [[0, 0, 0, 140], [0.5, 0, 90, 255], [1, 120, 220, 255]];
const MARKER = '#ff6d00';
const MARKER_BAND = 'rgba(255, 109, 0, 0.18)';

const state = {
  tags: {}, run: null, tag: null, steps: [], step: null,
  clip: null, original: [], relevance: {}, frame: 0, playing: false,
  part: 'joint', colormap: 'signed', opacity: 0.6, perPart: false, curve: 'sum',
  userColormap: false, loadToken: 0, lastTick: 0,
};
const ui = {};

export async function render() {
  buildPage();
  connectHost();
  await refresh();
}

// ---------------------------------------------------------------------------------------------
// Page

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function labelled(text, control) {
  return el('label', {class: 'field'}, [el('span', {text}), control]);
}

function buildPage() {
  const link = el('link', {rel: 'stylesheet', href: './static/style.css'});
  document.head.append(link);
  document.title = 'Relevance Video';

  ui.run = el('select', {id: 'run', onchange: () => selectRun(ui.run.value)});
  ui.tag = el('select', {id: 'tag', onchange: () => selectTag(ui.tag.value)});
  ui.step = el('select', {id: 'step', onchange: () => selectStep(Number(ui.step.value))});
  ui.parts = el('div', {id: 'parts', class: 'segmented', role: 'group'});
  ui.colormap = el('select', {id: 'colormap', onchange: () => {
    state.colormap = ui.colormap.value; state.userColormap = true; draw();
  }});
  for (const [value, text] of Object.entries(COLORMAPS)) {
    ui.colormap.append(el('option', {value, text}));
  }
  ui.opacity = el('input', {id: 'opacity', type: 'range', min: '0', max: '100', value: '60',
    oninput: () => { state.opacity = Number(ui.opacity.value) / 100; draw(); }});
  ui.perPart = el('input', {id: 'per-part', type: 'checkbox', onchange: () => {
    state.perPart = ui.perPart.checked; draw();
  }});
  ui.toolbar = el('div', {class: 'toolbar'}, [
    labelled('Run', ui.run), labelled('Tag', ui.tag), labelled('Step', ui.step),
    labelled('Part', ui.parts), labelled('Colour', ui.colormap),
    labelled('Opacity', ui.opacity),
    el('label', {class: 'field check'}, [ui.perPart, el('span', {text: 'scale part to own max'})]),
  ]);

  ui.originalCanvas = el('canvas', {id: 'original', width: '1', height: '1'});
  ui.overlayCanvas = el('canvas', {id: 'overlay', width: '1', height: '1'});
  ui.overlayCaption = el('figcaption', {text: 'relevance overlay'});
  ui.legend = el('canvas', {id: 'legend', width: '160', height: '10'});
  ui.legendText = el('div', {class: 'legend-text'});
  const clips = el('div', {class: 'clips'}, [
    el('figure', {}, [ui.originalCanvas, el('figcaption', {text: 'original'})]),
    el('figure', {}, [ui.overlayCanvas, ui.overlayCaption,
      el('div', {class: 'legend'}, [ui.legend, ui.legendText])]),
  ]);

  ui.play = el('button', {id: 'play', type: 'button', text: 'Play', onclick: togglePlay});
  ui.frame = el('input', {id: 'frame', type: 'range', min: '0', max: '0', value: '0',
    oninput: () => { pause(); setFrame(Number(ui.frame.value)); }});
  ui.frameLabel = el('span', {id: 'frame-label', class: 'frame-label', text: ''});
  const transport = el('div', {class: 'transport'}, [ui.play, ui.frame, ui.frameLabel]);

  ui.curveKind = el('select', {id: 'curve-kind', onchange: () => {
    state.curve = ui.curveKind.value; drawCurve();
  }}, [el('option', {value: 'sum', text: 'sum of relevance per frame'}),
    el('option', {value: 'abs_sum', text: 'sum of |relevance| per frame'})]);
  ui.curve = el('canvas', {id: 'curve', width: '640', height: '140',
    onclick: (event) => seekFromCurve(event)});
  const curveBox = el('div', {class: 'curve'}, [
    el('div', {class: 'curve-head'}, [
      el('span', {text: 'Relevance over time'}),
      ui.curveLegend = el('span', {id: 'curve-legend', class: 'curve-legend'}),
      ui.curveKind,
    ]),
    ui.curve,
  ]);

  ui.info = el('dl', {id: 'info', class: 'info'});
  ui.viewer = el('div', {id: 'viewer', class: 'viewer', hidden: ''},
    [clips, transport, curveBox, ui.info]);
  ui.empty = el('div', {id: 'empty', class: 'empty', hidden: ''}, [
    el('h2', {text: 'No relevance clips logged yet'}),
    el('p', {text: 'Write one from PyTorch with'}),
    el('pre', {text: 'from captum_video.tensorboard import add_relevance_clip\n' +
      'add_relevance_clip(writer, "relevance/clip0", clip, attribution, global_step=step,\n' +
      '                   target=label, prediction=logits, method="IntegratedGradients")'}),
    el('p', {text: 'then reload. Try: captum-video demo, then tensorboard --logdir <its output>.'}),
  ]);
  ui.status = el('div', {id: 'status', class: 'status', role: 'status'});
  document.body.append(el('main', {class: 'captum-video'},
    [ui.toolbar, ui.status, ui.empty, ui.viewer]));
  document.body.dataset.status = 'loading';

  document.addEventListener('keydown', (event) => {
    if (!state.clip || event.target instanceof HTMLSelectElement) return;
    if (event.key === 'ArrowRight') { pause(); setFrame(state.frame + 1); }
    else if (event.key === 'ArrowLeft') { pause(); setFrame(state.frame - 1); }
    else if (event.key === ' ' && !(event.target instanceof HTMLButtonElement)) {
      event.preventDefault(); togglePlay();
    }
  });
}

function setStatus(text, kind = '') {
  ui.status.textContent = text;
  ui.status.className = 'status ' + kind;
}

function fillSelect(select, values, current, label = (v) => String(v)) {
  select.replaceChildren(...values.map((v) => el('option', {value: String(v), text: label(v)})));
  if (current !== null && values.map(String).includes(String(current))) {
    select.value = String(current);
  }
}

// ---------------------------------------------------------------------------------------------
// Data

async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

function query(params) {
  return new URLSearchParams(params).toString();
}

// Re-read the run/tag listing, keeping the user's run, tag, step and frame where they still
// exist (TensorBoard's reload and auto-reload call this through the host IPC).
async function refresh() {
  try {
    state.tags = await getJson('./tags');
  } catch (error) {
    setStatus('Could not list relevance clips: ' + error.message, 'error');
    document.body.dataset.status = 'error';
    return;
  }
  const runs = Object.keys(state.tags);
  if (runs.length === 0) {
    ui.empty.hidden = false;
    ui.viewer.hidden = true;
    setStatus('');
    document.body.dataset.status = 'empty';
    return;
  }
  ui.empty.hidden = true;
  const run = runs.includes(state.run) ? state.run : runs[0];
  fillSelect(ui.run, runs, run);
  await selectRun(run, true);
}

async function selectRun(run, keep = false) {
  state.run = run;
  const tags = Object.keys(state.tags[run] || {});
  const tag = tags.includes(state.tag) ? state.tag : tags[0];
  fillSelect(ui.tag, tags, tag);
  await selectTag(tag, keep);
}

async function selectTag(tag, keep = false) {
  state.tag = tag;
  // The shown clip is stale from here on, until selectStep has loaded the new one.
  const previous = document.body.dataset.status;
  document.body.dataset.status = 'loading';
  let steps;
  try {
    steps = await getJson('./steps?' + query({run: state.run, tag}));
  } catch (error) {
    setStatus('Could not read steps: ' + error.message, 'error');
    document.body.dataset.status = 'error';
    return;
  }
  state.steps = steps.map((d) => d.step);
  const step = keep && state.steps.includes(state.step) ? state.step : state.steps.at(-1);
  fillSelect(ui.step, state.steps, step, (s) => `step ${s}`);
  if (keep && state.clip && step === state.step && state.clip.run === state.run &&
      state.clip.tag === tag) {
    document.body.dataset.status = previous;
    return; // same clip still selected: keep frame and playback as they are
  }
  await selectStep(step);
}

async function selectStep(step) {
  state.step = step;
  const token = ++state.loadToken;
  document.body.dataset.status = 'loading';
  setStatus(`Loading step ${step} ...`);
  let clip;
  try {
    clip = await getJson('./clip?' + query({run: state.run, tag: state.tag, step}));
    const blocks = ['original', ...clip.header.parts];
    const decoded = await Promise.all(blocks.map((name) => Promise.all(
      clip.frames[name].map((key) => loadPixels(key)))));
    if (token !== state.loadToken) return; // a newer selection won
    state.original = decoded[0];
    state.relevance = {};
    clip.header.parts.forEach((name, i) => {
      state.relevance[name] = decoded[i + 1].map((img) => greyChannel(img));
    });
  } catch (error) {
    if (token !== state.loadToken) return;
    setStatus('Could not load the clip: ' + error.message, 'error');
    document.body.dataset.status = 'error';
    return;
  }
  clip.run = state.run;
  clip.tag = state.tag;
  state.clip = clip;
  const header = clip.header;
  if (!header.parts.includes(state.part)) state.part = 'joint';
  if (!state.userColormap) {
    state.colormap = header.encoding === 'signed' ? 'signed' : 'positive';
    ui.colormap.value = state.colormap;
  }
  buildPartButtons(header.parts);
  for (const canvas of [ui.originalCanvas, ui.overlayCanvas]) {
    canvas.width = header.width;
    canvas.height = header.height;
    const longest = Math.max(header.width, header.height);
    const zoom = longest <= 320 ? Math.max(1, Math.floor(320 / longest)) : 320 / longest;
    canvas.style.width = `${Math.round(header.width * zoom)}px`;
    canvas.style.height = `${Math.round(header.height * zoom)}px`;
  }
  ui.frame.max = String(header.num_frames - 1);
  fillInfo(clip);
  ui.viewer.hidden = false;
  setStatus('');
  setFrame(Math.min(state.frame, header.num_frames - 1));
  document.body.dataset.status = 'ready';
}

// Decode one blob into RGBA pixels without colour management, so bytes stay exact.
async function loadPixels(key) {
  const response = await fetch('./blob?' + query({key}));
  if (!response.ok) throw new Error(`blob ${response.status}`);
  const bitmap = await createImageBitmap(await response.blob(),
    {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d', {willReadFrequently: true});
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

function greyChannel(imageData) {
  const out = new Uint8Array(imageData.width * imageData.height);
  for (let i = 0; i < out.length; i++) out[i] = imageData.data[4 * i];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Controls

function buildPartButtons(parts) {
  ui.parts.replaceChildren(...parts.map((name) => el('button', {
    type: 'button', 'data-part': name, text: name,
    'aria-pressed': String(name === state.part),
    onclick: () => selectPart(name),
  })));
}

function selectPart(name) {
  state.part = name;
  for (const button of ui.parts.children) {
    button.setAttribute('aria-pressed', String(button.dataset.part === name));
  }
  ui.overlayCaption.textContent = `relevance overlay: ${name}`;
  draw();
  drawCurve();
}

function togglePlay() {
  if (state.playing) pause();
  else if (state.clip) {
    state.playing = true;
    ui.play.textContent = 'Pause';
    state.lastTick = performance.now();
    requestAnimationFrame(tick);
  }
}

function pause() {
  state.playing = false;
  ui.play.textContent = 'Play';
}

function tick(now) {
  if (!state.playing || !state.clip) return;
  const period = 1000 / state.clip.header.fps;
  if (now - state.lastTick >= period) {
    state.lastTick += period * Math.floor((now - state.lastTick) / period);
    setFrame((state.frame + 1) % state.clip.header.num_frames);
  }
  requestAnimationFrame(tick);
}

function setFrame(index) {
  if (!state.clip) return;
  const count = state.clip.header.num_frames;
  state.frame = Math.max(0, Math.min(count - 1, index));
  ui.frame.value = String(state.frame);
  ui.frameLabel.textContent = `frame ${state.frame + 1} / ${count}`;
  document.body.dataset.frame = String(state.frame);
  draw();
  drawCurve();
}

function seekFromCurve(event) {
  if (!state.clip) return;
  const rect = ui.curve.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (ui.curve.width / rect.width);
  const {left, width} = curveArea();
  pause();
  setFrame(Math.floor((x - left) / width * state.clip.header.num_frames));
}

// ---------------------------------------------------------------------------------------------
// Drawing

function ramp(stops, v) {
  for (let i = 1; i < stops.length; i++) {
    if (v <= stops[i][0]) {
      const [p0, ...c0] = stops[i - 1];
      const [p1, ...c1] = stops[i];
      const f = (v - p0) / (p1 - p0);
      return c0.map((c, k) => c + f * (c1[k] - c));
    }
  }
  return stops.at(-1).slice(1);
}

// 256-entry table: relevance byte -> [r, g, b, weight] for the current colour map and part.
function lookupTable() {
  const header = state.clip.header;
  const gain = state.perPart ? header.scale / (header.part_max_abs[state.part] || header.scale) : 1;
  const table = new Float32Array(256 * 4);
  for (let b = 0; b < 256; b++) {
    let r = header.encoding === 'signed' ? (b - 127.5) / 127.5 : b / 255;
    r = Math.max(-1, Math.min(1, r * gain));
    if (Math.abs(r) < 0.5 / 255) r = 0; // the signed code 127/128 is zero up to rounding
    let colour = [0, 0, 0];
    let weight = 0;
    if (state.colormap === 'positive') { weight = Math.max(r, 0); colour = ramp(WARM, weight); }
    else if (state.colormap === 'absolute') { weight = Math.abs(r); colour = ramp(WARM, weight); }
    else { weight = Math.abs(r); colour = ramp(r >= 0 ? WARM : COLD, weight); }
    table.set([...colour, weight], 4 * b);
  }
  return table;
}

function draw() {
  if (!state.clip) return;
  const original = state.original[state.frame];
  ui.originalCanvas.getContext('2d').putImageData(original, 0, 0);
  const codes = state.relevance[state.part][state.frame];
  const table = lookupTable();
  const out = new ImageData(original.width, original.height);
  const src = original.data;
  const dst = out.data;
  const opacity = state.opacity;
  for (let i = 0; i < codes.length; i++) {
    const t = 4 * codes[i];
    const alpha = opacity * table[t + 3];
    for (let c = 0; c < 3; c++) {
      dst[4 * i + c] = src[4 * i + c] * (1 - alpha) + table[t + c] * alpha;
    }
    dst[4 * i + 3] = 255;
  }
  ui.overlayCanvas.getContext('2d').putImageData(out, 0, 0);
  drawLegend(table);
}

function drawLegend(table) {
  const context = ui.legend.getContext('2d');
  const width = ui.legend.width;
  for (let x = 0; x < width; x++) {
    const t = 4 * Math.round(x / (width - 1) * 255);
    const [r, g, b, w] = table.subarray(t, t + 4);
    context.fillStyle = `rgb(${r * w + 128 * (1 - w)},${g * w + 128 * (1 - w)},` +
      `${b * w + 128 * (1 - w)})`;
    context.fillRect(x, 0, 1, ui.legend.height);
  }
  const header = state.clip.header;
  const top = state.perPart ? header.part_max_abs[state.part] : header.scale;
  const low = header.encoding === 'signed' ? -top : 0;
  ui.legendText.textContent = `${fmt(low)} … ${fmt(top)}`;
}

function curveArea() {
  const pad = 8;
  return {left: 40, top: pad, width: ui.curve.width - 40 - pad, height: ui.curve.height - 2 * pad};
}

function drawCurve() {
  const context = ui.curve.getContext('2d');
  context.clearRect(0, 0, ui.curve.width, ui.curve.height);
  if (!state.clip) return;
  const header = state.clip.header;
  const count = header.num_frames;
  const {left, top, width, height} = curveArea();
  const series = header.parts.map((name) => [name, header.curves[name][state.curve]]);
  const values = series.flatMap(([, ys]) => ys);
  const low = Math.min(0, ...values);
  const high = Math.max(0, ...values);
  const span = high - low || 1;
  const xOf = (t) => left + (t + 0.5) / count * width;
  const yOf = (v) => top + (high - v) / span * height;

  context.strokeStyle = '#9e9e9e';
  context.lineWidth = 1;
  context.beginPath();
  context.moveTo(left, Math.round(yOf(0)) + 0.5);
  context.lineTo(left + width, Math.round(yOf(0)) + 0.5);
  context.stroke();
  context.fillStyle = '#757575';
  context.font = '10px sans-serif';
  context.fillText(fmt(high), 2, top + 8);
  context.fillText(fmt(low), 2, top + height);

  // Current frame: a light band over the frame's column and a solid line at its centre,
  // drawn under the curves.
  const band = Math.max(2, width / count);
  context.fillStyle = MARKER_BAND;
  context.fillRect(Math.round(xOf(state.frame) - band / 2), top, Math.round(band), height);
  context.fillStyle = MARKER;
  context.fillRect(Math.round(xOf(state.frame)) - 1, top, 2, height);

  // The selected part last, so it is drawn on top of the others.
  series.sort(([a], [b]) => (a === state.part) - (b === state.part));
  for (const [name, ys] of series) {
    const selected = name === state.part;
    context.strokeStyle = selected ? '#1565c0' : 'rgba(120, 120, 120, 0.45)';
    context.lineWidth = selected ? 2 : 1;
    context.beginPath();
    ys.forEach((v, t) => (t ? context.lineTo(xOf(t), yOf(v)) : context.moveTo(xOf(t), yOf(v))));
    context.stroke();
  }
  const others = header.parts.filter((name) => name !== state.part);
  ui.curveLegend.textContent = `blue: ${state.part}` +
    (others.length ? `, grey: ${others.join(', ')}` : '') + ', orange: current frame';
  const ys = header.curves[state.part][state.curve];
  context.fillStyle = '#1565c0';
  context.beginPath();
  context.arc(xOf(state.frame), yOf(ys[state.frame]), 4, 0, 2 * Math.PI);
  context.fill();
}

function fmt(value) {
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  return magnitude >= 1e4 || magnitude < 1e-3 ? value.toExponential(2) : value.toPrecision(3);
}

function labelText(label) {
  if (!label) return '—';
  if (label.label && label.index !== null) return `${label.label} (${label.index})`;
  return label.label ?? `class ${label.index}`;
}

function fillInfo(clip) {
  const header = clip.header;
  const rows = [
    ['target', labelText(header.target)],
    ['prediction', labelText(header.prediction) +
      (header.prediction && header.prediction.score !== undefined ?
        `, score ${fmt(header.prediction.score)}` : '') +
      (header.correct === true ? '  ✓ correct' : header.correct === false ? '  ✗ wrong' : '')],
    ['method', header.method ?? '—'],
    ['step', String(clip.step)],
    ['clip', `${header.num_frames} frames, ${header.width}×${header.height}, ${header.fps} fps`],
    ['relevance scale', `${fmt(header.scale)} (${header.encoding})`],
  ];
  if (header.video_rescaled) rows.push(['note', 'the clip was min-max rescaled for display']);
  for (const [key, value] of Object.entries(header.info || {})) {
    rows.push([key, typeof value === 'string' ? value : JSON.stringify(value)]);
  }
  ui.info.replaceChildren(...rows.flatMap(([key, value]) => [
    el('dt', {text: key}), el('dd', {text: value, 'data-key': key}),
  ]));
}

// ---------------------------------------------------------------------------------------------
// TensorBoard host IPC (experimental plugin_lib protocol): re-read data on reload.

function connectHost() {
  if (window.parent === window) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    if (message.isReply) return;
    channel.port1.postMessage(JSON.stringify(
      {type: message.type, id: message.id, payload: null, error: null, isReply: true}));
    if (message.type === 'experimental.DataReloaded') refresh();
  };
  window.parent.postMessage('experimental.bootstrap', '*', [channel.port2]);
}
