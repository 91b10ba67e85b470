// build-swarm dashboard. Plain JavaScript, no build step, no third-party code.
//
// It polls the read API every POLL_MS with relative paths only, so the same page works on
// an orchestrator and on the gateway (whose merged status and drone list have the same
// shape). Package lists are always asked page by page (offset/limit, the server counts
// the total), so the page stays light with 100,000 packages. Everything that comes from
// the server is inserted as text, never as HTML.
'use strict';

(function () {
  const POLL_MS = 2000;
  // A building package's live output: polled this often, this many lines kept on the page.
  const LIVE_MS = 1000;
  const LIVE_KEEP = 2000;
  const PAGE = 50;
  const FAIL_PAGE = 20;
  const STATES = ['waiting', 'queued', 'building', 'uploading', 'built', 'failed', 'blocked'];
  const TOKEN_KEY = 'build-swarm.token';

  const $ = (id) => document.getElementById(id);

  let token = '';
  try {
    token = window.localStorage.getItem(TOKEN_KEY) || '';
  } catch (e) {
    token = '';
  }
  let skewMs = 0; // the server's clock minus ours, from the Date header
  let packagesAvailable = true;
  let timer = null;
  let running = false;
  let searchDebounce = null;
  const search = { state: '', q: '', offset: 0 };
  const failures = { offset: 0 };
  let logAtom = null;

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ------------------------------------------------------------ helpers

  function fmtInt(n) {
    return typeof n === 'number' ? n.toLocaleString('en-US') : '–';
  }

  function fmtDuration(totalSeconds) {
    let s = Math.max(0, Math.round(totalSeconds));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + s + 's';
    return s + 's';
  }

  function serverNow() {
    return (Date.now() + skewMs) / 1000;
  }

  function until(unix) {
    const left = unix - serverNow();
    return left <= 0 ? 'now' : 'in ' + fmtDuration(left);
  }

  function ago(unix) {
    const past = serverNow() - unix;
    return past < 1 ? 'just now' : fmtDuration(past) + ' ago';
  }

  function clockTime(unix) {
    return new Date(unix * 1000).toLocaleString();
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function setCount(id, n) {
    const e = $(id);
    e.textContent = fmtInt(n);
    e.dataset.value = typeof n === 'number' ? String(n) : '';
  }

  // An offline drone's self-healing ladder, in words ('' when it has none).
  function healing(h) {
    if (!h) return '';
    const n = h.restarts + '/' + h.max_restarts;
    if (h.step === 'restarting') return 'restarting over ssh (' + n + ')';
    if (h.step === 'needs_human') return 'needs a human (' + n + ' restarts)';
    return 'healing: ' + n + ' restarts' + (h.last_result ? ' — ' + h.last_result : '');
  }

  function statePill(state) {
    return el('span', state, 'pill st-' + state);
  }

  function atomButton(atom) {
    const b = el('button', atom, 'link');
    b.type = 'button';
    b.dataset.atom = atom;
    b.title = 'show the build-log tail';
    return b;
  }

  function replaceRows(tbody, rows) {
    const frag = document.createDocumentFragment();
    rows.forEach((r) => frag.appendChild(r));
    tbody.replaceChildren(frag);
  }

  function packagesQuery(state, q, offset, limit) {
    const p = new URLSearchParams();
    if (state) p.set('state', state);
    if (q) p.set('q', q);
    p.set('offset', String(offset));
    p.set('limit', String(limit));
    return 'api/v1/packages?' + p.toString();
  }

  // ------------------------------------------------------------ API

  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const resp = await fetch(path, { headers: headers, cache: 'no-store' });
    const date = Date.parse(resp.headers.get('Date') || '');
    if (!Number.isNaN(date)) {
      const skew = date - Date.now();
      // The header has whole seconds: only a real difference of clocks is worth it.
      skewMs = Math.abs(skew) > 2000 ? skew : 0;
    }
    if (!resp.ok) {
      let message = resp.status + ' ' + resp.statusText;
      try {
        const body = await resp.json();
        if (body && body.error) message = body.error;
      } catch (e) {
        // not JSON: keep the status line
      }
      throw new HttpError(resp.status, message);
    }
    return resp.json();
  }

  // ------------------------------------------------------------ rendering

  function renderStatus(st) {
    if (st.name) $('orch-name').textContent = st.name;
    document.title = 'build-swarm' + (st.name ? ' · ' + st.name : '') +
      (typeof st.progress_pct === 'number' ? ' · ' + st.progress_pct + '%' : '');
    const pct = $('progress-pct');
    pct.textContent = typeof st.progress_pct === 'number' ? st.progress_pct.toFixed(1) + ' %' : '–';
    pct.dataset.value = typeof st.progress_pct === 'number' ? String(st.progress_pct) : '';
    const eta = $('eta');
    const done = (st.built || 0) + (st.failed || 0) + (st.blocked || 0) >= (st.total || 0);
    eta.dataset.value = typeof st.eta_s === 'number' ? String(st.eta_s) : '';
    eta.textContent = done ? '' : typeof st.eta_s === 'number' ? '· about ' + fmtDuration(st.eta_s) + ' left' : '· ETA unknown';
    eta.title = 'from declared and learned build times and the slots of the drones that may build';
    setCount('count-total', st.total);
    const total = st.total || 0;
    STATES.forEach((s) => {
      setCount('count-' + s, st[s]);
      const seg = $('bar-' + s);
      const n = st[s] || 0;
      seg.style.width = total > 0 ? (100 * n / total) + '%' : '0%';
      seg.title = s + ': ' + fmtInt(n);
    });
    const d = st.drones || {};
    const parts = ['total ' + fmtInt(d.total), 'active ' + fmtInt(d.active), 'grounded ' + fmtInt(d.grounded),
      'offline ' + fmtInt(d.offline)];
    if (typeof d.paused === 'number') parts.push('paused ' + fmtInt(d.paused));
    if (d.mismatched) parts.push('mismatched ' + fmtInt(d.mismatched));
    $('drone-summary').textContent = parts.join(' · ');
    renderFault(st.central_fault);
  }

  function renderFault(fault) {
    const banner = $('fault-banner');
    if (!fault) {
      banner.hidden = true;
      banner.replaceChildren();
      return;
    }
    const since = typeof fault.since === 'number' ? fault.since : null;
    const rest = (since !== null ? ' since ' + clockTime(since) + ' (' + ago(since) + ')' : '') +
      ': ' + (fault.reason || 'no reason given') +
      ' — failures point at shared infrastructure (upload target, the orchestrator\'s disk), not at the drones.';
    banner.replaceChildren(el('strong', 'Central fault'), document.createTextNode(rest));
    banner.hidden = false;
  }

  function renderDrones(drones) {
    $('drones-empty').hidden = drones.length > 0;
    const rows = drones.map((d) => {
      const tr = document.createElement('tr');
      tr.dataset.drone = d.name;
      tr.dataset.state = d.state;
      const name = el('td', d.name);
      if (d.host) name.title = d.host + (d.version ? ' · ' + d.version : '');
      if (d.outdated) {
        tr.dataset.outdated = '1';
        const badge = el('span', 'outdated', 'badge outdated');
        badge.title = 'runs ' + (d.version || 'an unknown version') + ', older than the orchestrator';
        name.appendChild(document.createTextNode(' '));
        name.appendChild(badge);
      }
      tr.appendChild(name);
      const st = document.createElement('td');
      st.appendChild(statePill(d.state));
      tr.appendChild(st);
      tr.appendChild(el('td', (d.current || []).join(', ') || '—', 'atoms'));
      tr.appendChild(el('td', d.slots, 'num'));
      tr.appendChild(el('td', d.failures, 'num'));
      const gu = el('td', d.grounded_until ? until(d.grounded_until) : '—', 'grounded-until');
      if (d.grounded_until) gu.title = clockTime(d.grounded_until);
      tr.appendChild(gu);
      const reason = el('td', d.grounded_reason || d.mismatch || healing(d.healing), 'reason');
      if (d.capabilities && d.capabilities.length) reason.title = 'capabilities: ' + d.capabilities.join(', ');
      tr.appendChild(reason);
      const seen = el('td', d.last_seen ? ago(d.last_seen) : 'never');
      if (d.last_seen) seen.title = clockTime(d.last_seen);
      tr.appendChild(seen);
      return tr;
    });
    replaceRows($('drones-body'), rows);
  }

  async function loadReleases() {
    const r = await api('api/v1/binhost/releases');
    const channels = r.channels || [];
    const snapshots = r.snapshots || [];
    $('channels-empty').hidden = channels.length > 0;
    $('releases-summary').textContent = snapshots.length ? fmtInt(snapshots.length) + ' snapshot' + (snapshots.length === 1 ? '' : 's') : '';
    const rows = channels.map((c) => {
      const tr = document.createElement('tr');
      tr.dataset.channel = c.name;
      tr.dataset.snapshot = c.snapshot;
      const name = document.createElement('td');
      const a = el('a', c.path);
      a.href = c.path.replace(/^\//, '');
      name.appendChild(a);
      tr.appendChild(name);
      tr.appendChild(el('td', c.snapshot, 'snapshot'));
      const tagged = el('td', ago(c.tagged_at));
      tagged.title = clockTime(c.tagged_at);
      tr.appendChild(tagged);
      tr.appendChild(el('td', c.timestamp, 'num'));
      tr.appendChild(el('td', c.previous || '—'));
      return tr;
    });
    replaceRows($('channels-body'), rows);
  }

  function pagerText(offset, shown, total) {
    if (total === 0) return 'none';
    return fmtInt(offset + 1) + '–' + fmtInt(offset + shown) + ' of ' + fmtInt(total);
  }

  async function loadFailures() {
    const list = await api(packagesQuery('failed', '', failures.offset, FAIL_PAGE));
    const total = list.total || 0;
    if (failures.offset > 0 && failures.offset >= total) {
      failures.offset = Math.max(0, Math.floor((total - 1) / FAIL_PAGE) * FAIL_PAGE);
      return loadFailures();
    }
    const ft = $('failures-total');
    ft.textContent = '(' + fmtInt(total) + ')';
    ft.dataset.value = String(total);
    $('failures-empty').hidden = total > 0;
    const rows = list.packages.map((p) => {
      const tr = document.createElement('tr');
      tr.dataset.atom = p.atom;
      const a = document.createElement('td');
      a.appendChild(atomButton(p.atom));
      tr.appendChild(a);
      tr.appendChild(el('td', p.attempts, 'num'));
      tr.appendChild(el('td', p.reason || '', 'reason'));
      return tr;
    });
    replaceRows($('failures-body'), rows);
    $('failures-page').textContent = pagerText(failures.offset, list.packages.length, total);
    $('failures-prev').disabled = failures.offset === 0;
    $('failures-next').disabled = failures.offset + list.packages.length >= total;
    return undefined;
  }

  async function loadPackages() {
    const list = await api(packagesQuery(search.state, search.q, search.offset, PAGE));
    const total = list.total || 0;
    if (search.offset > 0 && search.offset >= total) {
      search.offset = Math.max(0, Math.floor((total - 1) / PAGE) * PAGE);
      return loadPackages();
    }
    const rows = list.packages.map((p) => {
      const tr = document.createElement('tr');
      tr.dataset.atom = p.atom;
      tr.dataset.state = p.state;
      const a = document.createElement('td');
      a.appendChild(atomButton(p.atom));
      tr.appendChild(a);
      const st = document.createElement('td');
      st.appendChild(statePill(p.state));
      tr.appendChild(st);
      tr.appendChild(el('td', p.drone || ''));
      tr.appendChild(el('td', p.attempts, 'num'));
      tr.appendChild(el('td', p.reason || '', 'reason'));
      return tr;
    });
    replaceRows($('packages-body'), rows);
    const range = $('packages-range');
    range.dataset.total = String(total);
    range.textContent = fmtInt(total) + ' matching' + (total > 0 ? ', showing ' +
      pagerText(search.offset, list.packages.length, total) : '');
    $('page-info').textContent = pagerText(search.offset, list.packages.length, total);
    $('page-prev').disabled = search.offset === 0;
    $('page-next').disabled = search.offset + list.packages.length >= total;
    return undefined;
  }

  async function showLog(atom) {
    const slash = atom.indexOf('/');
    if (slash < 0) return;
    logAtom = atom;
    writeHash();
    const path = 'api/v1/packages/' + encodeURIComponent(atom.slice(0, slash)) + '/' +
      encodeURIComponent(atom.slice(slash + 1)) + '/log';
    const section = $('log-section');
    $('log-atom').textContent = atom;
    $('log-state').replaceChildren();
    $('log-reason').textContent = 'loading…';
    $('log-tail').textContent = '';
    section.hidden = false;
    try {
      const log = await api(path);
      if (logAtom !== atom) return;
      $('log-state').replaceChildren(statePill(log.state));
      $('log-reason').textContent = log.reason || '';
      $('log-tail').textContent = log.log_tail || '(no build log stored for this package)';
      if (log.state === 'building' || log.state === 'uploading') followLog(atom, path);
    } catch (e) {
      if (logAtom !== atom) return;
      $('log-reason').textContent = 'cannot load the log: ' + e.message;
    }
    section.scrollIntoView({ block: 'nearest' });
  }

  // A building package's output, live, while its view is open: log/live every
  // LIVE_MS from the last line shown (the page keeps the last LIVE_KEEP lines).
  async function followLog(atom, base) {
    const kept = [];
    let after = null;
    let lease = null;
    while (logAtom === atom) {
      let live;
      try {
        live = await api(base + '/live' + (after === null ? '' : '?after=' + after));
      } catch (e) {
        if (logAtom !== atom) return;
        $('log-reason').textContent = 'live output interrupted: ' + e.message;
        await new Promise((r) => setTimeout(r, LIVE_MS * 2));
        continue;
      }
      if (logAtom !== atom) return;
      if (lease !== null && live.lease !== null && live.lease !== lease) {
        // Another attempt: its lines are numbered anew.
        lease = live.lease;
        after = 0;
        kept.push('--- another attempt, on ' + (live.drone || '?'));
        continue;
      }
      lease = live.lease;
      if (live.gap) kept.push('[… earlier output not kept]');
      for (const l of live.lines) kept.push(l);
      if (kept.length > LIVE_KEEP) kept.splice(0, kept.length - LIVE_KEEP);
      after = live.next;
      const pre = $('log-tail');
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      if (live.lines.length || live.gap) pre.textContent = kept.join('\n');
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      $('log-state').replaceChildren(statePill(live.state));
      const ended = live.phase === 'ended' ||
        (live.phase === 'none' && ['built', 'failed', 'blocked'].includes(live.state));
      $('log-reason').textContent = ended
        ? 'build ended: ' + live.state + (live.reason ? ' — ' + live.reason : '')
        : 'live output' + (live.drone ? ' from ' + live.drone : '') + ' (' + live.phase + ')';
      if (ended) return;
      await new Promise((r) => setTimeout(r, LIVE_MS));
    }
  }

  // ------------------------------------------------------------ timeline

  const SVG = 'http://www.w3.org/2000/svg';
  // The timeline is asked for at most this often (it covers two hours).
  const TIMELINE_MS = 10000;
  let timelineAt = 0;

  function svgEl(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function loadTimeline() {
    if (Date.now() - timelineAt < TIMELINE_MS) return;
    timelineAt = Date.now();
    renderTimeline(await api('api/v1/timeline?limit=2000'));
  }

  // One row per drone slot, one bar per attempt (hover: atom, outcome, times); below,
  // builds finished per bucket and the ETA over time.
  function renderTimeline(tl) {
    const W = 1000, LABEL = 130, ROW = 16, span = Math.max(1, tl.to - tl.from);
    const x = (t) => LABEL + (Math.min(Math.max(t, tl.from), tl.to) - tl.from) / span * (W - LABEL);
    const svg = $('timeline');
    const attempts = tl.rows.reduce((n, r) => n + r.bars.length, 0);
    $('timeline-summary').textContent = attempts + ' attempts on ' + tl.rows.length + ' slots, last ' +
      Math.round(span / 60) + ' min' + (tl.truncated ? ' (latest only)' : '');
    const h = Math.max(1, tl.rows.length) * ROW + 18;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + h);
    svg.setAttribute('height', String(h));
    const frag = document.createDocumentFragment();
    tl.rows.forEach((r, i) => {
      const row = r.drone + '/' + r.slot;
      const y = i * ROW;
      frag.appendChild(svgEl('text', { x: 2, y: y + ROW - 4, class: 'row-label' }, row));
      for (const b of r.bars) {
        const end = b.end === null || b.end === undefined ? tl.now : b.end;
        const rect = svgEl('rect', {
          x: x(b.start).toFixed(1), y: y + 2, height: ROW - 4,
          width: Math.max(1.5, x(end) - x(b.start)).toFixed(1),
          class: 'bar o-' + b.outcome, 'data-row': row, 'data-atom': b.atom,
        });
        rect.appendChild(svgEl('title', {}, b.atom + ' — ' + b.outcome + ', ' + clockTime(b.start) + '–' +
          (b.end ? clockTime(b.end) : 'now') + (b.uploading ? ' (uploading from ' + clockTime(b.uploading) + ')' : '')));
        frag.appendChild(rect);
      }
    });
    frag.appendChild(svgEl('text', { x: LABEL, y: h - 4, class: 'axis' }, clockTime(tl.from)));
    frag.appendChild(svgEl('text', { x: W - 60, y: h - 4, class: 'axis' }, clockTime(tl.to)));
    svg.replaceChildren(frag);

    const tp = $('throughput');
    const TH = 90, max = Math.max(1, ...tl.throughput.map((b) => b.built + b.failed));
    tp.setAttribute('viewBox', '0 0 ' + W + ' ' + (TH + 18));
    tp.setAttribute('height', String(TH + 18));
    const f2 = document.createDocumentFragment();
    const bw = (W - LABEL) / Math.max(1, tl.throughput.length);
    tl.throughput.forEach((b, i) => {
      const hb = b.built / max * TH, hf = b.failed / max * TH;
      const r = svgEl('rect', { x: (LABEL + i * bw).toFixed(1), y: (TH - hb).toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: hb.toFixed(1), class: 'tp o-built' });
      r.appendChild(svgEl('title', {}, b.built + ' built, ' + b.failed + ' failed from ' + clockTime(b.start)));
      f2.appendChild(r);
      if (hf > 0) f2.appendChild(svgEl('rect', { x: (LABEL + i * bw).toFixed(1), y: (TH - hb - hf).toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: hf.toFixed(1), class: 'tp o-failed' }));
    });
    const etas = tl.progress.filter((p) => p.eta_s !== null && p.eta_s !== undefined);
    if (etas.length) {
      const emax = Math.max(1, ...etas.map((p) => p.eta_s));
      const pts = etas.map((p) => x(p.t).toFixed(1) + ',' + (TH - p.eta_s / emax * TH).toFixed(1)).join(' ');
      f2.appendChild(svgEl('polyline', { points: pts, class: 'eta-line' }));
    }
    const last = tl.progress[tl.progress.length - 1];
    f2.appendChild(svgEl('text', { x: 2, y: 14, class: 'row-label' }, 'max ' + max + '/bucket'));
    if (last) {
      f2.appendChild(svgEl('text', { x: 2, y: 32, class: 'row-label', id: 'timeline-eta' },
        last.done + '/' + last.total + ' done' + (last.eta_s ? ', ETA ' + Math.round(last.eta_s / 60) + ' min' : '')));
    }
    tp.replaceChildren(f2);
  }

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function showTokenForm(show) {
    $('token-form').hidden = !show;
    if (show) $('token-input').focus();
  }

  // ------------------------------------------------------------ polling

  async function refresh() {
    if (running) return;
    running = true;
    try {
      const both = await Promise.all([api('api/v1/status'), api('api/v1/drones')]);
      renderStatus(both[0]);
      renderDrones(both[1].drones || []);
      if (packagesAvailable) {
        try {
          await Promise.all([loadFailures(), loadPackages(), loadReleases(), loadTimeline()]);
        } catch (e) {
          if (e.status === 404) {
            // The gateway merges status and drones only.
            packagesAvailable = false;
            $('failures-section').hidden = true;
            $('releases-section').hidden = true;
            $('timeline-section').hidden = true;
            $('packages-section').hidden = true;
            $('packages-unavailable').hidden = false;
          } else {
            throw e;
          }
        }
      }
      $('auth-banner').hidden = true;
      setConn('ok', 'updated ' + new Date().toLocaleTimeString());
      document.body.dataset.loaded = '1';
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || '0') + 1);
    } catch (e) {
      if (e.status === 401) {
        $('auth-banner').hidden = false;
        setConn('auth', 'token needed');
        document.body.dataset.auth = 'needed';
        if ($('token-form').hidden) showTokenForm(true);
      } else {
        setConn('error', 'cannot update: ' + e.message);
      }
    } finally {
      running = false;
    }
  }

  function schedule() {
    if (timer !== null) window.clearTimeout(timer);
    timer = null;
    if (document.hidden) return; // resumes on visibilitychange
    timer = window.setTimeout(async () => {
      timer = null;
      await refresh();
      schedule();
    }, POLL_MS);
  }

  async function refreshNow() {
    await refresh();
    schedule();
  }

  function reloadPackages() {
    if (!packagesAvailable) return;
    loadPackages().catch((e) => setConn('error', 'cannot list packages: ' + e.message));
  }

  // The hash may carry #token=…&state=…&q=…&log=cat/pf (a token given this way is stored and then
  // taken out of the address bar and the history).
  function readHash() {
    const h = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    if (h.has('token')) {
      token = h.get('token') || '';
      try {
        window.localStorage.setItem(TOKEN_KEY, token);
      } catch (e) {
        // storage refused (private mode): the token lives for this page only
      }
      h.delete('token');
      const rest = h.toString();
      window.history.replaceState(null, '', window.location.pathname + window.location.search +
        (rest ? '#' + rest : ''));
    }
    const st = h.get('state') || '';
    search.state = STATES.indexOf(st) >= 0 ? st : '';
    search.q = h.get('q') || '';
    $('filter-state').value = search.state;
    $('filter-q').value = search.q;
    const log = h.get('log') || '';
    if (log && log !== logAtom) showLog(log);
  }

  function writeHash() {
    const h = new URLSearchParams();
    if (search.state) h.set('state', search.state);
    if (search.q) h.set('q', search.q);
    if (logAtom) h.set('log', logAtom);
    const rest = h.toString();
    window.history.replaceState(null, '', window.location.pathname + window.location.search +
      (rest ? '#' + rest : ''));
  }

  function onSearchChanged() {
    search.state = $('filter-state').value;
    search.q = $('filter-q').value.trim();
    search.offset = 0;
    writeHash();
    reloadPackages();
  }

  function wire() {
    $('token-toggle').addEventListener('click', () => showTokenForm($('token-form').hidden));
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      token = $('token-input').value.trim();
      $('token-input').value = '';
      try {
        if (token) window.localStorage.setItem(TOKEN_KEY, token);
        else window.localStorage.removeItem(TOKEN_KEY);
      } catch (e) {
        // storage refused: keep it for this page only
      }
      showTokenForm(false);
      refreshNow();
    });
    $('token-clear').addEventListener('click', () => {
      token = '';
      try {
        window.localStorage.removeItem(TOKEN_KEY);
      } catch (e) {
        // nothing stored
      }
      $('token-input').value = '';
      refreshNow();
    });
    $('search-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      onSearchChanged();
    });
    $('filter-state').addEventListener('change', onSearchChanged);
    $('filter-q').addEventListener('input', () => {
      if (searchDebounce !== null) window.clearTimeout(searchDebounce);
      searchDebounce = window.setTimeout(onSearchChanged, 300);
    });
    $('page-prev').addEventListener('click', () => {
      search.offset = Math.max(0, search.offset - PAGE);
      reloadPackages();
    });
    $('page-next').addEventListener('click', () => {
      search.offset += PAGE;
      reloadPackages();
    });
    $('failures-prev').addEventListener('click', () => {
      failures.offset = Math.max(0, failures.offset - FAIL_PAGE);
      loadFailures().catch((e) => setConn('error', 'cannot list failures: ' + e.message));
    });
    $('failures-next').addEventListener('click', () => {
      failures.offset += FAIL_PAGE;
      loadFailures().catch((e) => setConn('error', 'cannot list failures: ' + e.message));
    });
    const onAtomClick = (ev) => {
      const b = ev.target.closest('button[data-atom]');
      if (b) showLog(b.dataset.atom);
    };
    $('failures-body').addEventListener('click', onAtomClick);
    $('packages-body').addEventListener('click', onAtomClick);
    $('log-close').addEventListener('click', () => {
      logAtom = null;
      $('log-section').hidden = true;
      writeHash();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refreshNow();
      else schedule();
    });
    window.addEventListener('hashchange', () => {
      readHash();
      search.offset = 0;
      reloadPackages();
    });
  }

  readHash();
  wire();
  refreshNow();
}());
