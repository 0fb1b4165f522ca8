// mixminus moderator page: plain modern JavaScript, no build step, no third-party code.
//
// The token lives in sessionStorage (this tab only) and goes out only in the X-Auth-Token
// header, never in a URL: the event stream is read with fetch() rather than EventSource,
// which cannot send headers. Everything the API returns is put on the page with
// textContent, never parsed as HTML.
'use strict';

const KEY_ACCOUNT = 'mixminus.account';
const KEY_TOKEN = 'mixminus.token';
/// How often the participant list (levels) is read while a conference is open, ms.
const POLL_MS = 400;
/// The most API answers kept on the page.
const MAX_ANSWERS = 30;

const state = {
  account: sessionStorage.getItem(KEY_ACCOUNT),
  token: sessionStorage.getItem(KEY_TOKEN),
  conference: null, // the open conference's id
  participants: [], // the last participant objects read
  relationships: [], // the last matrix read
  rosterKey: '', // what the participant rows were built from
  matrixKey: '', // what the matrix was built from
  shown: {}, // the level each meter shows, dB
  stream: null, // AbortController of the event stream
  poll: null, // interval id
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

// ---- the API ---------------------------------------------------------------------------

function accountPath(path) {
  return `/v2/accounts/${encodeURIComponent(state.account)}${path}`;
}

async function api(method, path, body) {
  const headers = { 'X-Auth-Token': state.token, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(accountPath(path), init);
  } catch (e) {
    return { status: 0, ok: false, json: null, error: String(e) };
  }
  let json = null;
  try {
    json = await response.json();
  } catch (_) {
    // Not JSON: the status says enough.
  }
  if (response.status === 401) signOut('The token was refused (401).');
  return { status: response.status, ok: response.ok, json };
}

/// One line for an API answer: the status and what the envelope says.
function describe(answer) {
  if (answer.status === 0) return `network error: ${answer.error}`;
  const j = answer.json || {};
  if (j.status === 'error') {
    const detail = j.data && Object.keys(j.data).length ? ` ${JSON.stringify(j.data)}` : '';
    return `${answer.status} ${j.message || 'error'}${detail}`;
  }
  return `${answer.status} ${JSON.stringify(j.data)}`;
}

function logAnswer(what, answer) {
  const item = el('li', { class: answer.ok ? 'ok' : 'error', 'data-status': String(answer.status) },
    el('span', { class: 'what', text: what }), ' → ', el('code', { text: describe(answer) }));
  const list = $('answers');
  list.prepend(item);
  while (list.children.length > MAX_ANSWERS) list.lastElementChild.remove();
}

// ---- sign in ---------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  state.account = $('signin-account').value.trim();
  state.token = $('signin-token').value;
  $('signin-submit').disabled = true;
  const answer = await api('GET', '/conferences');
  $('signin-submit').disabled = false;
  if (!answer.ok) {
    $('signin-error').textContent = `Sign-in refused: ${describe(answer)}`;
    state.token = null;
    return;
  }
  sessionStorage.setItem(KEY_ACCOUNT, state.account);
  sessionStorage.setItem(KEY_TOKEN, state.token);
  $('signin-token').value = '';
  $('signin-error').textContent = '';
  route();
}

function signOut(reason) {
  closeConference();
  sessionStorage.removeItem(KEY_TOKEN);
  state.token = null;
  $('signin-error').textContent = typeof reason === 'string' ? reason : '';
  route();
}

// ---- pages -----------------------------------------------------------------------------

function show(section) {
  for (const id of ['signin', 'conferences', 'conference']) $(id).hidden = id !== section;
  $('nav').hidden = section === 'signin';
  $('nav-account').textContent = state.account ? `account ${state.account}` : '';
}

function route() {
  if (!state.token) {
    closeConference();
    if (state.account) $('signin-account').value = state.account;
    show('signin');
    return;
  }
  const match = /^#\/c\/([A-Za-z0-9_-]{1,64})$/.exec(location.hash);
  if (match) {
    openConference(match[1]);
  } else {
    closeConference();
    show('conferences');
    loadConferences();
  }
}

async function loadConferences() {
  const answer = await api('GET', '/conferences');
  const rows = $('conference-rows');
  rows.replaceChildren();
  if (!answer.ok) {
    rows.append(el('tr', {}, el('td', { colSpan: 4, class: 'error', text: describe(answer) })));
    return;
  }
  const list = Array.isArray(answer.json.data) ? answer.json.data : [];
  $('conferences-empty').hidden = list.length > 0;
  for (const c of list) {
    const ro = c._read_only || {};
    rows.append(el('tr', { 'data-conference': c.id },
      el('td', {}, el('a', { href: `#/c/${c.id}`, text: c.name || c.id, id: `open-${c.id}` })),
      el('td', { text: c.id }),
      el('td', { text: String(ro.members ?? '') }),
      el('td', { text: ro.is_locked ? 'yes' : 'no' })));
  }
}

async function createConference(event) {
  event.preventDefault();
  const name = $('create-name').value.trim();
  const answer = await api('PUT', '/conferences', { data: { name } });
  if (answer.ok) {
    $('create-name').value = '';
    location.hash = `#/c/${answer.json.data.id}`;
  } else {
    alert(`Create refused: ${describe(answer)}`);
  }
}

// ---- one conference --------------------------------------------------------------------

function openConference(id) {
  if (state.conference === id) return;
  closeConference();
  state.conference = id;
  $('conf-id').textContent = id;
  $('conf-name').textContent = '';
  $('answers').replaceChildren();
  show('conference');
  api('GET', `/conferences/${id}`).then((a) => {
    if (a.ok && state.conference === id) $('conf-name').textContent = a.json.data.name || '';
  });
  refresh(true);
  state.poll = setInterval(() => refresh(false), POLL_MS);
  streamEvents(id);
}

function closeConference() {
  if (webrtc.pc) leaveBrowser();
  if (state.stream) state.stream.abort();
  if (state.poll) clearInterval(state.poll);
  state.stream = null;
  state.poll = null;
  state.conference = null;
  state.rosterKey = '';
  state.matrixKey = '';
  setLive(false);
}

/// Reads the participants (and, when `withMatrix`, the relationships) and redraws.
async function refresh(withMatrix) {
  const id = state.conference;
  if (!id) return;
  const reads = [api('GET', `/conferences/${id}/participants`)];
  if (withMatrix) reads.push(api('GET', `/conferences/${id}/relationships`));
  const [people, matrix] = await Promise.all(reads);
  if (state.conference !== id) return;
  if (people.ok && Array.isArray(people.json.data)) state.participants = people.json.data;
  if (matrix && matrix.ok && Array.isArray(matrix.json.data)) state.relationships = matrix.json.data;
  render();
}

let matrixRefresh = null;
/// Many events come in bursts (a relate over a list): one read for all of them.
function refreshSoon() {
  if (matrixRefresh) return;
  matrixRefresh = setTimeout(() => {
    matrixRefresh = null;
    refresh(true);
  }, 50);
}

function setLive(live) {
  $('live').textContent = live ? 'live' : 'offline';
  $('live').className = live ? 'live on' : 'live';
}

/// Server-sent events read with fetch(), so the token goes in a header.
async function streamEvents(id) {
  const controller = new AbortController();
  state.stream = controller;
  while (state.conference === id && !controller.signal.aborted) {
    try {
      const response = await fetch(accountPath(`/conferences/${id}/events`), {
        headers: { 'X-Auth-Token': state.token, Accept: 'text/event-stream' },
        cache: 'no-store', credentials: 'omit', signal: controller.signal,
      });
      if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
      setLive(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          onEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    // The conference may have ended; look again in a moment.
    await new Promise((r) => setTimeout(r, 1500));
  }
}

function onEvent(block) {
  let name = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  let payload = {};
  try {
    payload = JSON.parse(data || '{}');
  } catch (_) {
    return;
  }
  const p = state.participants.find((x) => x.participant_id === payload.participant_id);
  if ((name === 'start-talking' || name === 'stop-talking') && p) {
    p.conference_channel_vars.talking = name === 'start-talking';
    render();
    return;
  }
  if (name !== 'floor-change') refreshSoon();
}

// ---- drawing ---------------------------------------------------------------------------

function displayName(p) {
  return p.caller_id_name || p.call_id || `#${p.participant_id}`;
}

/// Mean |sample| → dB re full scale, for the level meter (0 = −90 dB, 90 = full scale).
function levelDb(energy) {
  if (!energy) return -90;
  return Math.max(-90, 20 * Math.log10(energy / 32768));
}

function render() {
  const people = state.participants;
  $('participants-empty').hidden = people.length > 0;
  const rosterKey = JSON.stringify(people.map((p) => [p.participant_id, displayName(p),
    p.conference_channel_vars.speak, p.conference_channel_vars.hear, p.conference_channel_vars.is_moderator]));
  if (rosterKey !== state.rosterKey) {
    state.rosterKey = rosterKey;
    $('participant-rows').replaceChildren(...people.map(participantRow));
  }
  const matrixKey = JSON.stringify([people.map((p) => [p.participant_id, displayName(p)]), state.relationships]);
  if (matrixKey !== state.matrixKey) {
    state.matrixKey = matrixKey;
    drawMatrix();
  }
  for (const p of people) {
    const vars = p.conference_channel_vars;
    const row = $(`p-${p.participant_id}`);
    if (!row) continue;
    const talking = row.querySelector('.talking');
    talking.classList.toggle('on', !!vars.talking);
    talking.textContent = vars.talking ? 'talking' : '—';
    // The energy is one frame's, 0 for a frame that was late: the meter falls back by
    // at most 6 dB a read, so a single missing frame does not blank it.
    const db = Math.max(levelDb(vars.current_energy), (state.shown[p.participant_id] ?? -90) - 6);
    state.shown[p.participant_id] = db;
    const meter = row.querySelector('meter');
    meter.value = db + 90;
    meter.title = `${db.toFixed(0)} dBFS (mean |sample| ${vars.current_energy})`;
    const header = $(`talker-${p.participant_id}`);
    if (header) header.classList.toggle('speaking', !!vars.talking);
  }
}

function participantRow(p) {
  const vars = p.conference_channel_vars;
  const id = p.participant_id;
  const flags = [];
  if (!vars.speak) flags.push('muted');
  if (!vars.hear) flags.push('deaf');
  if (vars.is_moderator) flags.push('moderator');
  const action = (label, name) => el('button', {
    type: 'button', text: label, id: `${name}-${id}`,
    onclick: () => participantAction(id, name),
  });
  return el('tr', { id: `p-${id}`, 'data-participant': String(id) },
    el('td', { text: String(id) }),
    el('td', { text: displayName(p) }),
    el('td', {}, el('span', { class: 'talking', text: '—' })),
    el('td', {}, el('meter', { min: 0, max: 90, low: 30, high: 84, optimum: 60, value: 0 })),
    el('td', { class: 'flags', text: flags.join(' ') }),
    el('td', { class: 'actions' },
      vars.speak ? action('Mute', 'mute') : action('Unmute', 'unmute'),
      vars.hear ? action('Deafen', 'deaf') : action('Undeafen', 'undeaf'),
      action('Kick', 'kick')));
}

async function participantAction(id, action) {
  const answer = await api('PUT', `/conferences/${state.conference}/participants/${id}`,
    { data: { action } });
  logAnswer(`${action} ${id}`, answer);
  refresh(true);
}

/// The P→O record's flags.
function record(p, o) {
  const r = state.relationships.find((x) => x.participant_id === p && x.other_participant === o);
  return { deaf: !!(r && r.deaf), mute: !!(r && r.mute) };
}

/// What listener `o` gets from talker `s`: removed by `(o→s).deaf`, by `(s→o).mute`, both or
/// neither.
function cellState(o, s) {
  if (o === s) return 'self';
  const deaf = record(o, s).deaf;
  const mute = record(s, o).mute;
  if (deaf && mute) return 'deaf-mute';
  if (deaf) return 'deaf';
  if (mute) return 'mute';
  return 'hears';
}

const CELL_TEXT = { hears: 'hears', deaf: 'deaf', mute: 'mute', 'deaf-mute': 'deaf+mute', self: '' };

function drawMatrix() {
  const people = state.participants;
  const table = $('matrix');
  if (people.length === 0) {
    table.replaceChildren();
    return;
  }
  const head = el('tr', {}, el('th', { class: 'corner', text: 'listener ↓ talker →' }),
    ...people.map((p) => el('th', { id: `talker-${p.participant_id}`, scope: 'col',
      text: `${displayName(p)} (${p.participant_id})` })));
  const rows = people.map((o) => el('tr', {},
    el('th', { scope: 'row', text: `${displayName(o)} (${o.participant_id})` }),
    ...people.map((s) => {
      const st = cellState(o.participant_id, s.participant_id);
      const cell = el('td', {
        id: `cell-${o.participant_id}-${s.participant_id}`, class: `cell cell-${st}`,
        'data-state': st, text: CELL_TEXT[st],
        title: st === 'self' ? '' : `${displayName(o)} ${st === 'hears' ? 'hears' : 'does not hear'} ${displayName(s)}`,
      });
      if (st !== 'self') {
        cell.tabIndex = 0;
        cell.onclick = () => cycle(o.participant_id, s.participant_id, cell);
        cell.onkeydown = (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); cycle(o.participant_id, s.participant_id, cell); } };
      }
      return cell;
    })));
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

/// A relate body's `relationship` for a record's two flags.
function word(flags) {
  if (flags.deaf && flags.mute) return ['deaf', 'mute'];
  if (flags.deaf) return 'deaf';
  if (flags.mute) return 'mute';
  return 'clear';
}

async function relate(p, o, flags) {
  const relationship = word(flags);
  const answer = await api('PUT', `/conferences/${state.conference}/participants`,
    { data: { action: 'relate', data: { participant_id: p, other_participant: o, relationship } } });
  logAnswer(`relate ${p} → ${o} ${JSON.stringify(relationship)}`, answer);
  return answer.ok;
}

/// hears → deaf → mute → hears. Each step keeps the flag of the record that belongs to the
/// other cell (`(o→s).mute` is the cell s×o's business). From deaf to mute the mute is set
/// first, so the talker is never heard in between.
async function cycle(o, s, cell) {
  if (cell.classList.contains('pending')) return;
  cell.classList.add('pending');
  const os = record(o, s);
  const so = record(s, o);
  const st = cellState(o, s);
  if (st === 'hears') {
    await relate(o, s, { deaf: true, mute: os.mute });
  } else if (st === 'deaf') {
    if (await relate(s, o, { deaf: so.deaf, mute: true })) await relate(o, s, { deaf: false, mute: os.mute });
  } else {
    if (await relate(s, o, { deaf: so.deaf, mute: false }) && os.deaf) await relate(o, s, { deaf: false, mute: os.mute });
  }
  cell.classList.remove('pending');
  await refresh(true);
}

// ---- join from this browser (WHIP) -------------------------------------------------------

const webrtc = { pc: null, stream: null, location: null, context: null, analyser: null, timer: null };

/// Waits until the offer has all its candidates (the bridge takes no trickle ICE), at most 3 s.
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === 'complete') resolve(); };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, 3000);
  });
}

async function joinFromBrowser() {
  const id = state.conference;
  const status = $('join-status');
  $('join-browser').disabled = true;
  try {
    const raw = $('join-raw').checked;
    webrtc.stream = await navigator.mediaDevices.getUserMedia({
      audio: raw ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true,
    });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    webrtc.pc = pc;
    for (const track of webrtc.stream.getAudioTracks()) pc.addTransceiver(track, { direction: 'sendrecv' });
    pc.addEventListener('track', (e) => hearMix(e.streams[0] || new MediaStream([e.track])));
    pc.addEventListener('connectionstatechange', () => {
      status.textContent = `connection ${pc.connectionState}`;
      status.dataset.state = pc.connectionState;
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const name = $('join-name').value.trim();
    const query = name ? `?name=${encodeURIComponent(name)}` : '';
    const response = await fetch(accountPath(`/conferences/${id}/whip${query}`), {
      method: 'POST', body: pc.localDescription.sdp, cache: 'no-store', credentials: 'omit',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${state.token}` },
    });
    const text = await response.text();
    if (response.status !== 201) {
      let message = text;
      try { message = JSON.parse(text).message || text; } catch (_) { /* SDP or plain text */ }
      throw new Error(`WHIP ${response.status}: ${message}`);
    }
    webrtc.location = response.headers.get('Location');
    const participant = response.headers.get('X-Participant-Id');
    $('browser-join').dataset.participant = participant || '';
    logAnswer(`WHIP join${participant ? ` as ${participant}` : ''}`, { status: 201, ok: true, json: { data: webrtc.location } });
    await pc.setRemoteDescription({ type: 'answer', sdp: text });
    $('leave-browser').hidden = false;
    $('join-browser').hidden = true;
  } catch (e) {
    status.textContent = String(e.message || e);
    status.dataset.state = 'failed';
    leaveBrowser(false);
  } finally {
    $('join-browser').disabled = false;
  }
}

async function leaveBrowser(tellServer = true) {
  if (tellServer && webrtc.location) {
    const response = await fetch(webrtc.location, {
      method: 'DELETE', cache: 'no-store', credentials: 'omit',
      headers: { Authorization: `Bearer ${state.token}` },
    });
    logAnswer('WHIP leave', { status: response.status, ok: response.ok, json: { data: null } });
  }
  if (webrtc.pc) webrtc.pc.close();
  if (webrtc.stream) for (const t of webrtc.stream.getTracks()) t.stop();
  if (webrtc.timer) clearInterval(webrtc.timer);
  if (webrtc.context) webrtc.context.close();
  Object.assign(webrtc, { pc: null, stream: null, location: null, context: null, analyser: null, timer: null });
  $('browser-join').dataset.participant = '';
  $('remote-audio').srcObject = null;
  $('leave-browser').hidden = true;
  $('join-browser').hidden = false;
}

/// Plays the mix this browser gets back and analyses it (WebAudio): the strongest
/// frequencies are shown, and `window.mixminus.levels([Hz…])` reads levels for tests.
function hearMix(stream) {
  // Chrome feeds a remote stream to WebAudio only while a media element plays it.
  $('remote-audio').srcObject = stream;
  const context = new AudioContext();
  context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0.5;
  context.createMediaStreamSource(stream).connect(analyser);
  Object.assign(webrtc, { context, analyser });
  webrtc.timer = setInterval(() => {
    const peaks = spectrumPeaks(4);
    $('browser-hearing').textContent = peaks.length
      ? `This browser hears: ${peaks.map((p) => `${p.hz.toFixed(0)} Hz ${p.db.toFixed(0)} dB`).join(', ')}`
      : 'This browser hears silence.';
  }, 500);
}

function spectrum() {
  const a = webrtc.analyser;
  if (!a) return null;
  const bins = new Float32Array(a.frequencyBinCount);
  a.getFloatFrequencyData(bins);
  return { bins, hzPerBin: webrtc.context.sampleRate / a.fftSize };
}

/// The level (dB, the analyser's scale) at each frequency: the strongest bin within ±15 Hz.
function levels(freqs) {
  const s = spectrum();
  if (!s) return null;
  return freqs.map((f) => {
    const lo = Math.max(0, Math.floor((f - 15) / s.hzPerBin));
    const hi = Math.min(s.bins.length - 1, Math.ceil((f + 15) / s.hzPerBin));
    let best = -Infinity;
    for (let i = lo; i <= hi; i++) best = Math.max(best, s.bins[i]);
    return Number.isFinite(best) ? best : -200;
  });
}

function spectrumPeaks(n) {
  const s = spectrum();
  if (!s) return [];
  const peaks = [];
  for (let i = 2; i < s.bins.length - 2; i++) {
    const v = s.bins[i];
    if (v > -70 && v >= s.bins[i - 1] && v >= s.bins[i + 1] && v >= s.bins[i - 2] && v >= s.bins[i + 2]) {
      peaks.push({ hz: i * s.hzPerBin, db: v });
    }
  }
  return peaks.sort((a, b) => b.db - a.db).slice(0, n);
}

window.mixminus = { levels };

// ---- start -----------------------------------------------------------------------------

// A policy violation is a bug in this page: keep a trace where a test can read it.
document.addEventListener('securitypolicyviolation', (e) => {
  const seen = document.body.dataset.cspViolations || '';
  document.body.dataset.cspViolations = `${seen}${e.violatedDirective} ${e.blockedURI};`;
});

document.addEventListener('DOMContentLoaded', () => {
  $('signin-form').addEventListener('submit', signIn);
  $('create-form').addEventListener('submit', createConference);
  $('sign-out').addEventListener('click', () => signOut());
  $('join-browser').addEventListener('click', joinFromBrowser);
  $('leave-browser').addEventListener('click', () => leaveBrowser());
  window.addEventListener('hashchange', route);
  route();
});
