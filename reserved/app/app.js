/*
 * The seat map app (SPEC §8): plain JavaScript, no build step, nothing loaded from
 * outside the server. It talks to reserved's JSON API (SPEC §6, §6a, §9) on the same
 * origin and follows a performance's seat changes over Server-Sent Events.
 *
 * State lives in `state` below; the page is redrawn from it by the render* functions.
 * The login token is kept in sessionStorage (this tab only) and sent as
 * "Authorization: Bearer". The automation hooks of SPEC §8 (data-seat-id, data-available,
 * data-held, data-action, data-reservation-id, data-role="status") are part of the
 * contract: tests drive the app through them, so they do not change.
 */
'use strict';
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  const state = {
    session: null, // {token, userId, role, email}
    perf: null, // the open performance (SPEC §6 performance object)
    seats: new Map(), // seat id -> {id,row,number,type,price,available,held}
    selected: new Set(), // seat ids picked and not held yet
    hold: null, // {id, performanceId, seatIds, expiresAt, deadline (local ms)}
    perfTitles: new Map(), // performance id -> title (for the reservation list)
    es: null, // the EventSource of the open performance
    esOpened: 0, // times a stream of this performance opened (a re-open resyncs)
    esRetry: null, // timer of a new stream after the old one closed
    esBackoff: 2000,
    tick: null, // the countdown's interval
    busy: false, // a request of the cart is under way
    query: '', // the search of the performance list
  };

  /* ---- text for every outcome: SPEC §6, §6a, §9 error codes, then our own ---- */
  const ERRORS = {
    SEAT_TAKEN: 'Someone else got {seats} a moment ago. Pick other seats.',
    SOLD_OUT: 'This performance is sold out.',
    LIMIT_EXCEEDED:
      'That is more seats than one person may buy for this performance (seats you hold count too).',
    PAYMENT_DECLINED: 'Your payment was declined: nothing was charged and nothing was booked.',
    HOLD_EXPIRED: 'Your hold ran out and its seats were released. Pick them again if they are still free.',
    BAD_CREDENTIALS: 'Wrong email or password.',
    EMAIL_TAKEN: 'An account with this email exists already. Log in instead.',
    RATE_LIMITED: 'Too many requests at once. Wait {retry} and try again.',
    BUSY: 'Many people are booking this performance right now. Try again in {retry}.',
    UNAVAILABLE: 'Booking is unavailable for a moment (the server is restarting or a service it needs is down). Try again shortly.',
    UNAUTHENTICATED: 'Your session has ended. Log in again.',
    FORBIDDEN: 'Your account may not do that.',
    NOT_FOUND: 'Not found: it does not exist (any more), or it is not yours.',
    IDEMPOTENCY_MISMATCH: 'This booking attempt was already used for other seats. Try again.',
    BAD_REQUEST: 'The server did not accept that: {message}',
    TOO_LARGE: 'That request is too large (too many seats at once?).',
    HEADERS_TOO_LARGE: 'The request headers were too large.',
    REQUEST_TIMEOUT: 'The request took too long to arrive. Try again.',
    METHOD_NOT_ALLOWED: 'The server does not allow that action.',
    NOT_IMPLEMENTED: 'The server does not support that action.',
    EXPECTATION_FAILED: 'The server refused the request.',
    INTERNAL: 'Something went wrong on the server ({message}). Try again.',
    NETWORK: 'The server cannot be reached. Check the connection and try again.',
  };

  /* ---- the status line (data-role="status"): the last outcome, code first ---- */
  function setStatus(code, text, kind) {
    const el = $('[data-role="status"]');
    el.textContent = code + ': ' + text;
    el.dataset.code = code;
    el.dataset.kind = kind || 'info';
  }

  function retryText(after) {
    const s = parseInt(after, 10);
    return s > 0 ? s + (s === 1 ? ' second' : ' seconds') : 'a moment';
  }

  function seatNames(ids) {
    const names = (ids || []).map((id) => {
      const s = state.seats.get(id);
      return s ? s.row + '-' + s.number : '#' + id;
    });
    return names.length ? names.join(', ') : 'those seats';
  }

  function errorText(err) {
    const tmpl = ERRORS[err.code] || '{message}';
    return tmpl
      .replace('{seats}', seatNames(err.body && err.body.seatIds))
      .replace('{retry}', retryText(err.retryAfter))
      .replace('{message}', err.message || 'HTTP ' + err.status);
  }

  function showError(err) {
    setStatus(err.code, errorText(err), 'error');
  }

  /* ---- the API ---- */
  class ApiError extends Error {
    constructor(status, code, message, body, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.body = body || {};
      this.retryAfter = retryAfter;
    }
  }

  async function api(method, path, body, headers) {
    const h = Object.assign({ Accept: 'application/json' }, headers || {});
    if (body !== undefined) h['Content-Type'] = 'application/json';
    if (state.session) h.Authorization = 'Bearer ' + state.session.token;
    let res;
    try {
      res = await fetch(path, {
        method,
        headers: h,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'NETWORK', String(e));
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      const e = (data && data.error) || {};
      const err = new ApiError(res.status, e.code || 'HTTP_' + res.status, e.message || res.statusText,
        e, res.headers.get('Retry-After'));
      if (err.code === 'UNAUTHENTICATED' && state.session) dropSession();
      throw err;
    }
    return { data, headers: res.headers };
  }

  /* ---- formatting ---- */
  const won = (n) => Number(n).toLocaleString('en-US') + ' KRW';
  function when(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toLocaleString('en-GB', {
      weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit',
    });
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids) e.append(k);
    return e;
  }

  /* ---- the session ---- */
  function loadSession() {
    try {
      state.session = JSON.parse(sessionStorage.getItem('bk.session') || 'null');
    } catch (e) {
      state.session = null;
    }
  }
  function saveSession(s) {
    state.session = s;
    if (s) sessionStorage.setItem('bk.session', JSON.stringify(s));
    else sessionStorage.removeItem('bk.session');
  }
  function dropSession() {
    saveSession(null);
    setHold(null);
    renderAccount();
    renderCart();
  }

  function renderAccount() {
    const inn = !!state.session;
    $('#login-form').hidden = inn;
    $('#signup-form').hidden = inn;
    $('#account').hidden = inn;
    $('#who').hidden = !inn;
    $('#mine').hidden = !inn;
    $('#who-name').textContent = inn ? state.session.email + (state.session.role === 'admin' ? ' (admin)' : '') : '';
    if (!inn) $('#resv-list').textContent = '';
  }

  async function login(email, password, quiet) {
    const { data } = await api('POST', '/sessions', { email, password });
    saveSession({ token: data.token, userId: data.userId, role: data.role, email });
    renderAccount();
    renderCart();
    if (!quiet) setStatus('LOGGED_IN', 'Logged in as ' + email + '.', 'ok');
    loadReservations();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const f = ev.currentTarget;
    const email = f.elements.email.value.trim();
    const password = f.elements.password.value;
    try {
      await login(email, password);
      f.reset();
    } catch (e) {
      showError(e);
      f.elements.password.value = '';
      f.elements.password.focus();
    }
  }

  async function onSignup(ev) {
    ev.preventDefault();
    const f = ev.currentTarget;
    const name = f.elements.name.value.trim();
    const email = f.elements.email.value.trim();
    const password = f.elements.password.value;
    try {
      await api('POST', '/users', { name, email, password });
      await login(email, password, true);
      f.reset();
      setStatus('SIGNED_UP', 'Welcome, ' + name + ': your account is ready and you are logged in.', 'ok');
    } catch (e) {
      showError(e);
    }
  }

  async function onLogout() {
    if (state.hold) await releaseHold(true);
    try {
      await api('DELETE', '/sessions/current');
    } catch (e) {
      /* the token is dropped here whatever the server said */
    }
    dropSession();
    setStatus('LOGGED_OUT', 'You are logged out.', 'ok');
  }

  /* ---- performances ---- */
  async function loadPerformances(q) {
    state.query = q;
    const qs = new URLSearchParams({ limit: '50' });
    if (q) qs.set('q', q);
    let data;
    try {
      ({ data } = await api('GET', '/performances?' + qs));
    } catch (e) {
      showError(e);
      return;
    }
    const list = $('#perf-list');
    list.textContent = '';
    for (const p of data.items) {
      state.perfTitles.set(p.id, p.title);
      const b = el('button', { type: 'button', 'data-performance-id': p.id,
        'aria-current': state.perf && state.perf.id === p.id ? 'true' : null },
      el('span', { class: 't', text: p.title }),
      el('span', { class: 'd', text: when(p.startsAt) }),
      el('span', { class: 'd', 'data-left': p.id, text: seatsLeft(p) }));
      b.addEventListener('click', () => openPerformance(p.id));
      list.append(el('li', {}, b));
    }
    $('#perf-empty').hidden = data.items.length > 0;
  }

  function seatsLeft(p) {
    return p.remainingCapacity + ' of ' + p.totalCapacity + ' seats left · from ' +
      won(Math.min(p.normalPrice, p.vipPrice));
  }

  async function openPerformance(id) {
    let perf, seats;
    try {
      [perf, seats] = await Promise.all([
        api('GET', '/performances/' + id),
        api('GET', '/performances/' + id + '/seats'),
      ]);
    } catch (e) {
      showError(e);
      return;
    }
    const changed = !state.perf || state.perf.id !== perf.data.id;
    state.perf = perf.data;
    state.perfTitles.set(state.perf.id, state.perf.title);
    if (changed) {
      state.selected.clear();
      setHold(restoreHold(state.perf.id));
    }
    state.seats = new Map(seats.data.seats.map((s) => [s.id, normSeat(s)]));
    history.replaceState(null, '', '/?performance=' + state.perf.id);
    $$('#perf-list button').forEach((b) =>
      b.setAttribute('aria-current', String(Number(b.dataset.performanceId) === state.perf.id)));
    renderMap();
    if (changed) openStream(state.perf.id);
  }

  async function refreshSeats() {
    if (!state.perf) return;
    const id = state.perf.id;
    try {
      const [perf, seats] = await Promise.all([
        api('GET', '/performances/' + id),
        api('GET', '/performances/' + id + '/seats'),
      ]);
      if (!state.perf || state.perf.id !== id) return;
      state.perf = perf.data;
      state.seats = new Map(seats.data.seats.map((s) => [s.id, normSeat(s)]));
      renderMap();
    } catch (e) {
      /* the next event or action tries again */
    }
  }

  function normSeat(s) {
    return Object.assign({}, s, { available: s.available !== false, held: s.held === true });
  }

  /* ---- the seat map ---- */
  function heldState(s) {
    if (state.hold && state.hold.seatIds.includes(s.id) && (s.held || !s.available)) return 'mine';
    return s.held ? 'other' : 'none';
  }

  function seatLabel(s) {
    const h = heldState(s);
    const what = h === 'mine' ? 'held for you' : h === 'other' ? 'held by someone else'
      : s.available ? 'free' : 'sold';
    return 'Row ' + s.row + ', seat ' + s.number + ' · ' + s.type + ' · ' + won(s.price) + ' · ' + what;
  }

  function paintSeat(b, s) {
    const h = heldState(s);
    b.dataset.available = String(s.available);
    b.dataset.held = h;
    b.dataset.type = s.type;
    b.setAttribute('aria-pressed', String(state.selected.has(s.id)));
    b.title = seatLabel(s);
    b.setAttribute('aria-label', seatLabel(s));
  }

  function naturalCmp(a, b) {
    return String(a).localeCompare(String(b), 'en', { numeric: true });
  }

  function renderMap() {
    const p = state.perf;
    $('#map-h').textContent = p.title;
    $('#map-sub').textContent = when(p.startsAt) + ' · ' + p.remainingCapacity + ' of ' + p.totalCapacity +
      ' seats left · Normal ' + won(p.normalPrice) + ' · VIP ' + won(p.vipPrice);
    $('#legend').hidden = false;
    $('#stage').hidden = false;
    $('#cart').hidden = false;
    const map = $('#seatmap');
    map.textContent = '';
    const rows = new Map();
    let cols = 1;
    for (const s of state.seats.values()) {
      if (!rows.has(s.row)) rows.set(s.row, []);
      rows.get(s.row).push(s);
      cols = Math.max(cols, s.number);
    }
    cols = Math.min(cols, 200);
    map.style.setProperty('--cols', cols);
    const names = Array.from(rows.keys()).sort(naturalCmp);
    names.forEach((row, i) => {
      map.append(el('div', { class: 'rowlabel', style: 'grid-row:' + (i + 1) + ';grid-column:1', text: row,
        'aria-hidden': 'true' }));
      for (const s of rows.get(row).sort((a, b) => a.number - b.number)) {
        const b = el('button', { type: 'button', class: 'seat', 'data-seat-id': s.id,
          style: 'grid-row:' + (i + 1) + ';grid-column:' + (Math.min(s.number, cols) + 1) },
        el('span', { text: s.number, 'aria-hidden': 'true' }));
        paintSeat(b, s);
        map.append(b);
      }
    });
    renderCart();
  }

  function repaint(ids) {
    for (const id of ids) {
      const s = state.seats.get(id);
      const b = $('[data-seat-id="' + id + '"]');
      if (s && b) paintSeat(b, s);
    }
  }

  function onSeatClick(ev) {
    const b = ev.target.closest('[data-seat-id]');
    if (!b) return;
    const s = state.seats.get(Number(b.dataset.seatId));
    if (!s) return;
    const info = $('[data-role="seat-info"]');
    if (state.selected.has(s.id)) {
      state.selected.delete(s.id);
    } else if (heldState(s) === 'mine') {
      info.textContent = 'Row ' + s.row + ', seat ' + s.number + ' is held for you: book it below.';
      return;
    } else if (!s.available || s.held) {
      info.textContent = 'Row ' + s.row + ', seat ' + s.number + ' is not available.';
      return;
    } else if (state.hold) {
      info.textContent = 'Book or release the seats you hold first.';
      return;
    } else {
      state.selected.add(s.id);
    }
    info.textContent = seatLabel(s);
    paintSeat(b, s);
    renderCart();
  }

  function onSeatHover(ev) {
    const b = ev.target.closest && ev.target.closest('[data-seat-id]');
    const s = b && state.seats.get(Number(b.dataset.seatId));
    if (s) $('[data-role="seat-info"]').textContent = seatLabel(s);
  }

  /* ---- live updates (SPEC §8 event stream) ---- */
  function setLive(on) {
    const l = $('[data-role="live"]');
    l.dataset.state = on ? 'on' : 'off';
    l.textContent = on ? 'Live' : 'Live updates off';
  }

  function closeStream() {
    if (state.es) state.es.close();
    state.es = null;
    clearTimeout(state.esRetry);
    setLive(false);
  }

  function openStream(perfId) {
    closeStream();
    state.esOpened = 0;
    state.esBackoff = 2000;
    connectStream(perfId);
  }

  function connectStream(perfId) {
    if (!window.EventSource) return;
    const es = new EventSource('/performances/' + perfId + '/events');
    state.es = es;
    es.addEventListener('open', () => {
      setLive(true);
      state.esBackoff = 2000;
      // a stream opened anew (not resumed by the browser with Last-Event-ID) may have
      // missed changes: read the map again
      if (state.esOpened++ > 0) refreshSeats();
    });
    es.addEventListener('seats', (ev) => {
      let d;
      try {
        d = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (state.perf && d.performanceId === state.perf.id) applySeatEvent(d);
    });
    es.addEventListener('error', () => {
      setLive(false);
      if (es.readyState !== EventSource.CLOSED || state.es !== es) return;
      // closed for good (no stream on this server, or it answered an error): try again later
      state.esRetry = setTimeout(() => {
        if (state.perf && state.perf.id === perfId && state.es === es) connectStream(perfId);
      }, state.esBackoff);
      state.esBackoff = Math.min(state.esBackoff * 2, 30000);
    });
  }

  function applySeatEvent(d) {
    const ids = [];
    const gone = [];
    for (const c of d.seats || []) {
      const s = state.seats.get(c.id);
      if (!s) continue;
      s.available = c.available !== false;
      s.held = c.held === true;
      ids.push(c.id);
      if (state.selected.has(c.id) && (!s.available || s.held)) gone.push(c.id);
    }
    if (typeof d.remainingCapacity === 'number') {
      state.perf.remainingCapacity = d.remainingCapacity;
      const left = $('[data-left="' + state.perf.id + '"]');
      if (left) left.textContent = seatsLeft(state.perf);
      $('#map-sub').textContent = when(state.perf.startsAt) + ' · ' + d.remainingCapacity + ' of ' +
        state.perf.totalCapacity + ' seats left · Normal ' + won(state.perf.normalPrice) + ' · VIP ' +
        won(state.perf.vipPrice);
    }
    // our hold's seats shown free: the server expired or released it, or this is an
    // older event that arrived after our hold's answer; the map read again tells
    if (state.hold && state.hold.seatIds.some((id) => ids.includes(id)) && holdLooksFree()) {
      const h = state.hold;
      refreshSeats().then(() => {
        if (state.hold === h && holdLooksFree()) {
          setHold(null);
          setStatus('HOLD_EXPIRED', ERRORS.HOLD_EXPIRED, 'error');
          renderCart();
        }
      });
    }
    repaint(ids);
    // (while our own hold or booking is under way, its seats' event is ours)
    if (gone.length && !state.busy) {
      const held = gone.filter((id) => state.seats.get(id).held);
      const sold = gone.filter((id) => !state.seats.get(id).held);
      $('[data-role="seat-info"]').textContent = 'You picked seats someone else just ' +
        [held.length ? 'held: ' + seatNames(held) : '', sold.length ? 'bought: ' + seatNames(sold) : '']
          .filter(Boolean).join('; ') + '.';
    }
    renderCart();
  }

  /* ---- holds (SPEC §9) and the countdown ---- */
  function holdLooksFree() {
    return state.hold.seatIds.every((id) => {
      const s = state.seats.get(id);
      return s && s.available && !s.held;
    });
  }

  function holdKey(perfId) {
    return 'bk.hold.' + perfId;
  }

  function restoreHold(perfId) {
    if (!state.session) return null;
    try {
      const h = JSON.parse(sessionStorage.getItem(holdKey(perfId)) || 'null');
      if (h && h.userId === state.session.userId && h.deadline > Date.now()) return h;
    } catch (e) {
      /* a damaged entry is dropped */
    }
    sessionStorage.removeItem(holdKey(perfId));
    return null;
  }

  function setHold(h) {
    const old = state.hold;
    state.hold = h;
    if (old) sessionStorage.removeItem(holdKey(old.performanceId));
    if (h) sessionStorage.setItem(holdKey(h.performanceId), JSON.stringify(h));
    clearInterval(state.tick);
    state.tick = h ? setInterval(tick, 250) : null;
    if (old) repaint(old.seatIds);
    if (h) repaint(h.seatIds);
    tick();
  }

  function tick() {
    const c = $('[data-role="countdown"]');
    const h = state.hold;
    if (!h) {
      c.hidden = true;
      c.textContent = '';
      return;
    }
    const left = Math.max(0, Math.ceil((h.deadline - Date.now()) / 1000));
    c.hidden = false;
    c.dataset.low = String(left <= 30);
    c.dataset.secondsLeft = String(left);
    c.textContent = 'Held for you: ' + Math.floor(left / 60) + ':' + String(left % 60).padStart(2, '0') +
      ' left to book ' + seatNames(h.seatIds) + '.';
    if (left <= 0) holdRanOut();
  }

  function holdRanOut() {
    const h = state.hold;
    // the server frees an expired hold within 1 s of expiresAt (SPEC §9) and says so in
    // the event stream; until then show its seats free, and read the map again after
    for (const id of h.seatIds) {
      const s = state.seats.get(id);
      if (s) {
        s.available = true;
        s.held = false;
      }
    }
    setHold(null);
    setStatus('HOLD_EXPIRED', ERRORS.HOLD_EXPIRED, 'error');
    renderCart();
    setTimeout(refreshSeats, 1500);
  }

  function deadlineOf(expiresAt, headers) {
    const at = Date.parse(expiresAt);
    const server = Date.parse(headers.get('Date') || '');
    // trust the local clock unless it is far from the server's (Date has whole seconds)
    if (!isNaN(server) && Math.abs(server - Date.now()) > 5000) return Date.now() + (at - server);
    return at;
  }

  async function holdSeats() {
    const ids = Array.from(state.selected);
    const perfId = state.perf.id;
    await withBusy(async () => {
      try {
        const { data, headers } = await api('POST', '/performances/' + perfId + '/holds', { seatIds: ids });
        for (const id of data.seatIds) {
          const s = state.seats.get(id);
          if (s) {
            s.available = false;
            s.held = true;
          }
        }
        state.selected.clear();
        $('[data-role="seat-info"]').textContent = '';
        setHold({ id: data.id, performanceId: perfId, userId: state.session.userId, seatIds: data.seatIds,
          expiresAt: data.expiresAt, deadline: deadlineOf(data.expiresAt, headers) });
        setStatus('HELD', 'Seats ' + seatNames(data.seatIds) + ' are held for you until ' +
          new Date(state.hold.deadline).toLocaleTimeString('en-GB') + '. Book them before then.', 'ok');
      } catch (e) {
        afterFailure(e, ids);
      }
    });
  }

  async function releaseHold(quiet) {
    const h = state.hold;
    if (!h) return;
    try {
      await api('DELETE', '/holds/' + h.id);
      if (!quiet) setStatus('RELEASED', 'Released ' + seatNames(h.seatIds) + '.', 'ok');
    } catch (e) {
      if (!quiet && e.code !== 'NOT_FOUND') showError(e);
    }
    if (state.hold === h) setHold(null);
    await refreshSeats();
  }

  /* ---- booking ---- */
  function newKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  async function book() {
    const perfId = state.perf.id;
    const h = state.hold;
    const ids = h ? h.seatIds.slice() : Array.from(state.selected);
    const body = h ? { holdId: h.id } : { seatIds: ids };
    await withBusy(async () => {
      try {
        const { data } = await api('POST', '/performances/' + perfId + '/reservations', body,
          { 'Idempotency-Key': newKey() });
        const booked = data.seats.map((s) => s.seatId);
        for (const id of booked) {
          const s = state.seats.get(id);
          if (s) {
            s.available = false;
            s.held = false;
          }
        }
        state.selected.clear();
        if (h) setHold(null);
        setStatus('BOOKED', 'Booked ' + data.seats.map((s) => s.row + '-' + s.number).join(', ') + ' for ' +
          won(data.totalAmount) + ' (reservation #' + data.id + ').', 'ok');
        repaint(booked);
        $('[data-role="seat-info"]').textContent = '';
        loadReservations();
        refreshSeats();
        loadPerformances(state.query);
      } catch (e) {
        if (e.code === 'HOLD_EXPIRED' || (h && e.code === 'NOT_FOUND')) setHold(null);
        afterFailure(e, ids);
      }
    });
  }

  // After a refused hold or booking: the message, and the map read again (what we showed
  // was out of date, or the server's state moved).
  function afterFailure(e, ids) {
    if (e.code === 'SEAT_TAKEN') {
      for (const id of e.body.seatIds || ids) state.selected.delete(id);
    }
    showError(e);
    refreshSeats();
  }

  async function withBusy(fn) {
    state.busy = true;
    renderCart();
    try {
      await fn();
    } finally {
      state.busy = false;
      renderCart();
    }
  }

  function renderCart() {
    if (!state.perf) return;
    const inn = !!state.session;
    const n = state.selected.size;
    const h = state.hold;
    let total = 0;
    for (const id of h ? h.seatIds : state.selected) {
      const s = state.seats.get(id);
      if (s) total += s.price;
    }
    $('#cart-text').textContent = h
      ? 'Holding ' + h.seatIds.length + (h.seatIds.length === 1 ? ' seat' : ' seats') + ' · ' + won(total)
      : n
        ? n + (n === 1 ? ' seat' : ' seats') + ' selected: ' + seatNames(Array.from(state.selected)) + ' · ' +
          won(total)
        : 'No seats selected. Pick free seats on the map.';
    $('[data-action="hold"]').disabled = !inn || state.busy || !!h || n === 0;
    $('[data-action="book"]').disabled = !inn || state.busy || (!h && n === 0);
    $('[data-action="release"]').hidden = !h;
    $('[data-action="release"]').disabled = state.busy;
    $('[data-action="clear"]').hidden = n === 0;
    $('#cart-hint').textContent = inn
      ? h ? 'Book before the time runs out, or release the seats.'
        : 'Hold seats to keep them while you pay, or book them at once.'
      : 'Log in (or sign up) to hold and book seats.';
  }

  /* ---- my reservations ---- */
  async function loadReservations() {
    if (!state.session) return;
    let data;
    try {
      ({ data } = await api('GET', '/users/' + state.session.userId + '/reservations?limit=50'));
    } catch (e) {
      if (e.code === 'UNAUTHENTICATED') showError(e);
      return;
    }
    const list = $('#resv-list');
    list.textContent = '';
    for (const r of data.items) {
      const title = state.perfTitles.get(r.performanceId) || 'Performance #' + r.performanceId;
      const li = el('li', { 'data-reservation-id': r.id, 'data-status': r.status },
        el('div', { class: 'st', text: '#' + r.id + ' · ' + r.status }),
        el('div', { text: title }),
        el('div', { class: 'muted small', text: r.seats.map((s) => s.row + '-' + s.number + ' ' + s.type)
          .join(', ') + ' · ' + won(r.totalAmount) }));
      if (r.status === 'CONFIRMED') {
        const b = el('button', { type: 'button', 'data-action': 'cancel', text: 'Cancel',
          'aria-label': 'Cancel reservation #' + r.id });
        b.addEventListener('click', () => cancelReservation(r, b));
        li.append(b);
      }
      list.append(li);
    }
    $('#resv-empty').hidden = data.items.length > 0;
  }

  async function cancelReservation(r, button) {
    button.disabled = true;
    try {
      const { data } = await api('DELETE', '/reservations/' + r.id);
      setStatus('CANCELLED', 'Reservation #' + data.id + ' is cancelled; its seats are free again.', 'ok');
      if (state.perf && state.perf.id === data.performanceId) refreshSeats();
      loadPerformances(state.query);
    } catch (e) {
      showError(e);
    }
    loadReservations();
  }

  /* ---- start ---- */
  function start() {
    loadSession();
    renderAccount();
    $('#login-form').addEventListener('submit', onLogin);
    $('#signup-form').addEventListener('submit', onSignup);
    $('[data-action="logout"]').addEventListener('click', onLogout);
    $('#search-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      loadPerformances(ev.currentTarget.elements.q.value.trim());
    });
    $('#seatmap').addEventListener('click', onSeatClick);
    $('#seatmap').addEventListener('mouseover', onSeatHover);
    $('#seatmap').addEventListener('focusin', onSeatHover);
    $('[data-action="hold"]').addEventListener('click', holdSeats);
    $('[data-action="book"]').addEventListener('click', book);
    $('[data-action="release"]').addEventListener('click', () => releaseHold(false));
    $('[data-action="clear"]').addEventListener('click', () => {
      const ids = Array.from(state.selected);
      state.selected.clear();
      repaint(ids);
      renderCart();
    });
    const deep = Number(new URLSearchParams(location.search).get('performance'));
    loadPerformances('').then(() => {
      if (state.session) loadReservations();
    });
    if (Number.isInteger(deep) && deep > 0) openPerformance(deep);
  }

  start();
})();
