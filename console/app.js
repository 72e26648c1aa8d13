// tollgate's admin console. Served from the gateway's admin listener under a CSP that allows
// scripts and styles from this origin only: no inline code, no style attributes, no other host.
//
// The admin token is typed once, kept in this tab's sessionStorage and sent only as
// `Authorization: Bearer` to this origin's own endpoints (relative paths); it never goes into a
// URL. Everything shown comes from the API and is put into the page as text (textContent), never
// as markup.
(function () {
  'use strict';

  var TOKEN_KEY = 'tollgate.admin_token';
  var PALETTE = ['#2f6fde', '#e07b18', '#1f9d6b', '#c43c5c', '#7a52c7', '#8a7a12', '#16889b',
                 '#b5489e', '#5d6d7e', '#3a9a2f'];
  var state = {timers: [], chart: null, usage: null, busy: {}};

  function $(id) { return document.getElementById(id); }

  // An element with text children only; attributes are set one by one (never markup).
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        if (attrs[name] !== undefined && attrs[name] !== null) node.setAttribute(name, String(attrs[name]));
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function text(value) { return value === null || value === undefined || value === '' ? '-' : String(value); }

  function token() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function showError(name, message) {
    var node = document.querySelector('[data-error-for="' + name + '"]');
    if (node) node.textContent = message || '';
  }

  // GET a path of this gateway's admin API with the token. Only absolute paths of this origin
  // are accepted ("/x", not "//host/x"), and a redirect is an error rather than followed.
  function api(path) {
    if (path.charAt(0) !== '/' || path.charAt(1) === '/') return Promise.reject(new Error('bad path'));
    return fetch(path, {
      method: 'GET',
      headers: {'Authorization': 'Bearer ' + token(), 'Accept': 'application/json'},
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      referrerPolicy: 'no-referrer'
    }).then(function (response) {
      if (response.status === 401) {
        logout('The token was not accepted (401). Sign in again.');
        throw new Error('unauthenticated');
      }
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          var why = body && body.error && (body.error.message || body.error.reason);
          throw new Error(response.status + (why ? ': ' + why : ''));
        }
        return body;
      });
    });
  }

  // Runs `load` for section `name` unless its last run is still going; its error is shown there.
  function refresh(name, load) {
    if (state.busy[name] || !token()) return;
    state.busy[name] = true;
    load().then(function () {
      showError(name, '');
      $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString();
    }, function (err) {
      if (err && err.message !== 'unauthenticated') showError(name, 'Could not load: ' + err.message);
    }).then(function () { state.busy[name] = false; });
  }

  // ---- status ----
  function fact(dl, term, value, attrs) {
    dl.appendChild(el('dt', null, [term]));
    dl.appendChild(el('dd', attrs, [text(value)]));
  }

  function loadStatus() {
    return api('/status').then(function (s) {
      var dl = $('status');
      clear(dl);
      var config = s.config || {};
      var replica = s.replica || {};
      var reload = config.last_reload;
      fact(dl, 'Gateway version', s.version, {'data-field': 'version'});
      fact(dl, 'Config version', config.version || (config.sha256 ? String(config.sha256).slice(0, 12) : null),
           {'data-field': 'config-version'});
      fact(dl, 'Config loaded', config.loaded_at, {'data-field': 'config-loaded-at'});
      fact(dl, 'Last reload', reload ? (text(reload.at) + (reload.applied ? ' (applied)' : ' (not applied)') +
           (reload.errors && reload.errors.length ? ': ' + reload.errors.join('; ') : '')) : 'none since start',
           {'data-field': 'last-reload'});
      fact(dl, 'Replica', replica.id, {'data-field': 'replica-id'});
      fact(dl, 'Ready', replica.ready === undefined ? null : (replica.ready ? 'yes' : 'NO'),
           {'data-field': 'ready', 'class': replica.ready === false ? 'bad' : 'good'});
      if (replica.redis !== undefined) fact(dl, 'Redis', describe(replica.redis), {'data-field': 'redis'});
      if (replica.limiter) {
        fact(dl, 'Limiter', replica.limiter.fallback ? 'FALLBACK (local buckets)' : 'normal',
             {'data-field': 'limiter', 'class': replica.limiter.fallback ? 'bad' : 'good'});
      }
      if (replica.in_flight !== undefined) fact(dl, 'In flight', replica.in_flight, {'data-field': 'in-flight'});
      if (replica.connections !== undefined) fact(dl, 'Connections', describe(replica.connections));
      (replica.upstreams || []).forEach(function (u) {
        fact(dl, 'Upstream ' + text(u.name), u.cooldown ? 'cooling down' : 'ok',
             {'data-upstream': u.name, 'class': u.cooldown ? 'bad' : 'good'});
      });
    });
  }

  // A short text for a small object of facts ({"ok": true, "errors": 0} -> "ok: true, errors: 0").
  function describe(value) {
    if (value === null || typeof value !== 'object') return text(value);
    return Object.keys(value).map(function (k) {
      var v = value[k];
      return k + ': ' + (v !== null && typeof v === 'object' ? JSON.stringify(v) : text(v));
    }).join(', ');
  }

  // ---- callers ----
  function loadCallers() {
    return api('/callers').then(function (body) {
      var box = $('callers');
      clear(box);
      if (body.keys_error) box.appendChild(el('p', {'class': 'error'}, ['Run-time keys unavailable: ' + body.keys_error]));
      var items = body.items || [];
      if (!items.length) box.appendChild(el('p', {'class': 'muted'}, ['No callers configured.']));
      items.forEach(function (c) {
        var card = el('article', {'class': 'caller', 'data-caller': c.name}, [
          el('h3', null, [text(c.name), c.disabled ? el('span', {'class': 'tag bad'}, ['disabled']) : null]),
          c.description ? el('p', {'class': 'muted'}, [c.description]) : null,
          el('p', null, ['Roles: ', (c.roles || []).length ? c.roles.join(', ') : 'none',
                         c.expires ? ' · expires ' + c.expires : ''])
        ]);
        var keys = c.keys || [];
        if (keys.length) {
          var tbody = el('tbody');
          keys.forEach(function (k) {
            tbody.appendChild(el('tr', {'data-key-id': k.id, 'data-key-state': k.state}, [
              el('td', {'data-label': 'Key id'}, [el('code', null, [text(k.id)])]),
              el('td', {'data-label': 'Kind'}, [text(k.kind)]),
              el('td', {'data-label': 'State'}, [el('span', {'class': 'tag ' + (k.state === 'active' ? 'good' : (k.state === 'grace' ? 'warn' : 'bad'))}, [text(k.state)])]),
              el('td', {'data-label': 'Expires'}, [text(k.expires_at)]),
              el('td', {'data-label': 'Last used'}, [text(k.last_used_at)])
            ]));
          });
          card.appendChild(el('table', {'class': 'grid keys'}, [
            el('thead', null, [el('tr', null, ['Key id', 'Kind', 'State', 'Expires', 'Last used'].map(function (h) {
              return el('th', {scope: 'col'}, [h]);
            }))]), tbody]));
        } else {
          card.appendChild(el('p', {'class': 'muted'}, ['No keys.']));
        }
        box.appendChild(card);
      });
    });
  }

  // ---- limits ----
  // /limits without caller= answers every caller's ({"callers": [{"caller", "items"}]}); a
  // flat list whose rows name their caller is read too.
  function limitsByCaller(body) {
    var groups = {};
    var order = [];
    function add(caller, item) {
      if (!groups[caller]) { groups[caller] = []; order.push(caller); }
      groups[caller].push(item);
    }
    (body.callers || body.items || []).forEach(function (item) {
      if (item && Array.isArray(item.items)) {
        if (!groups[item.caller]) { groups[item.caller] = []; order.push(item.caller); }
        item.items.forEach(function (inner) { add(item.caller, inner); });
      } else {
        add(item.caller || body.caller || '-', item);
      }
    });
    return order.map(function (c) { return {caller: c, items: groups[c]}; });
  }

  function loadLimits() {
    return api('/limits').then(function (body) {
      var box = $('limits');
      clear(box);
      var groups = limitsByCaller(body);
      if (body.fallback) {
        box.appendChild(el('p', {'class': 'warn', 'data-fallback': 'true'},
          ['Redis did not answer: these are this replica\'s local levels, not the shared ones.']));
      }
      if (!groups.length) box.appendChild(el('p', {'class': 'muted'}, ['No limits apply.']));
      groups.forEach(function (g) {
        var list = el('ul', {'class': 'levels'});
        g.items.forEach(function (l) {
          var limit = Number(l.limit) || 0;
          var remaining = Math.max(0, Number(l.remaining) || 0);
          var low = limit > 0 && remaining / limit < 0.1;
          var meter = el('meter', {min: 0, max: limit > 0 ? limit : 1, value: Math.min(remaining, limit > 0 ? limit : 1),
                                   low: limit * 0.25, high: limit * 0.6, optimum: limit});
          list.appendChild(el('li', {'data-limit': l.name, 'data-kind': l.kind, 'data-remaining': remaining,
                                     'data-limit-value': limit, 'class': low ? 'low' : ''}, [
            el('div', {'class': 'level-head'}, [
              el('span', {'class': 'level-name'}, [text(l.name), el('span', {'class': 'tag'}, [text(l.kind)]),
                l.upstream ? el('span', {'class': 'muted'}, [' ' + l.upstream]) : null]),
              el('span', {'class': 'level-value'}, [Math.floor(remaining) + ' / ' + limit])
            ]),
            meter,
            el('div', {'class': 'muted small'}, [text(l.scope) + (l.reset_at ? ' · resets ' + l.reset_at : '')])
          ]));
        });
        box.appendChild(el('article', {'class': 'caller-levels', 'data-caller': g.caller}, [
          el('h3', null, [g.caller]),
          g.items.length ? list : el('p', {'class': 'muted small'}, ['No bucket or quota of its own.'])]));
      });
    });
  }

  // ---- usage ----
  function denials(row) {
    return (Number(row.forbidden) || 0) + (Number(row.rate_limited) || 0) + (Number(row.unauthenticated) || 0);
  }

  function metricOf(row, metric) {
    if (metric === 'requests') return Number(row.requests) || 0;
    if (metric === 'denials') return denials(row);
    var name = metric.slice('cost:'.length);
    return Number((row.cost || {})[name]) || 0;
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function costNames(items) {
    var names = {};
    items.forEach(function (row) { Object.keys(row.cost || {}).forEach(function (n) { names[n] = true; }); });
    return Object.keys(names).sort();
  }

  function loadUsage() {
    return api('/usage?group_by=day,caller').then(function (body) {
      state.usage = body;
      var items = body.items || [];
      $('usage-range').textContent = 'From ' + text(body.from) + ' to ' + text(body.to) + ' (UTC days)';
      // The metric choice: requests, denials, then one entry per cost name seen.
      var select = $('usage-metric');
      var chosen = select.value;
      Array.prototype.slice.call(select.options).forEach(function (o) {
        if (o.value.indexOf('cost:') === 0) select.removeChild(o);
      });
      costNames(items).forEach(function (n) { select.appendChild(el('option', {value: 'cost:' + n}, ['cost: ' + n])); });
      select.value = chosen;
      if (select.value !== chosen) select.value = 'requests';
      renderTotals(items);
      renderChart();
    });
  }

  function renderTotals(items) {
    var totals = {};
    var order = [];
    var all = {requests: 0, denials: 0};
    items.forEach(function (row) {
      var c = row.caller === undefined ? '-' : row.caller;
      if (!totals[c]) { totals[c] = {requests: 0, denials: 0, cost: {}}; order.push(c); }
      var t = totals[c];
      t.requests += Number(row.requests) || 0;
      t.denials += denials(row);
      Object.keys(row.cost || {}).forEach(function (n) { t.cost[n] = (t.cost[n] || 0) + (Number(row.cost[n]) || 0); });
      all.requests += Number(row.requests) || 0;
      all.denials += denials(row);
    });
    order.sort();
    var tbody = document.querySelector('#usage-totals tbody');
    clear(tbody);
    order.forEach(function (c) {
      var t = totals[c];
      var cost = Object.keys(t.cost).sort().map(function (n) { return n + ' ' + t.cost[n]; }).join(', ');
      tbody.appendChild(el('tr', {'data-caller': c}, [
        el('th', {scope: 'row'}, [c === '-' ? '- (unauthenticated)' : c]),
        el('td', {'data-label': 'Requests', 'data-total-requests': t.requests}, [t.requests]),
        el('td', {'data-label': 'Denials', 'data-total-denials': t.denials}, [t.denials]),
        el('td', {'data-label': 'Cost'}, [cost || '-'])
      ]));
    });
    if (!order.length) tbody.appendChild(el('tr', null, [el('td', {colspan: 4, 'class': 'muted'}, ['No usage in this period.'])]));
    $('usage-total-requests').textContent = String(all.requests);
    $('usage-total-requests').setAttribute('data-total-requests', String(all.requests));
    $('usage-total-denials').textContent = String(all.denials);
    $('usage-total-denials').setAttribute('data-total-denials', String(all.denials));
  }

  function renderChart() {
    if (!state.usage || typeof window.Chart !== 'function') return;
    var items = state.usage.items || [];
    var metric = $('usage-metric').value;
    var days = [];
    var callers = [];
    items.forEach(function (row) {
      if (days.indexOf(row.day) < 0) days.push(row.day);
      if (callers.indexOf(row.caller) < 0) callers.push(row.caller);
    });
    days.sort();
    callers.sort();
    var datasets = callers.map(function (c, i) {
      var data = days.map(function () { return 0; });
      items.forEach(function (row) {
        if (row.caller === c) data[days.indexOf(row.day)] += metricOf(row, metric);
      });
      return {label: c === '-' ? '- (unauthenticated)' : c, data: data, backgroundColor: PALETTE[i % PALETTE.length],
              borderWidth: 0, stack: 'callers', maxBarThickness: 90};
    });
    var fg = cssVar('--fg') || '#222';
    var grid = cssVar('--grid') || '#ddd';
    var title = metric === 'requests' ? 'Requests' : (metric === 'denials' ? 'Denials' : 'Cost: ' + metric.slice(5));
    if (state.chart) state.chart.destroy();
    state.chart = new window.Chart($('usage-chart'), {
      type: 'bar',
      data: {labels: days, datasets: datasets},
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        color: fg,
        plugins: {legend: {labels: {color: fg}}, title: {display: true, text: title, color: fg}},
        scales: {
          x: {stacked: true, ticks: {color: fg}, grid: {color: grid}},
          y: {stacked: true, beginAtZero: true, ticks: {color: fg, precision: 0}, grid: {color: grid}}
        }
      }
    });
    $('usage-chart').setAttribute('data-metric', metric);
  }

  // ---- refusals ----
  function loadRefusals() {
    return api('/refusals?limit=50').then(function (body) {
      $('refusals-source').textContent = body.source === 'stream' ? 'From the audit stream (all replicas).' :
          'From this replica\'s memory (the last 1,000 records it wrote).';
      var tbody = document.querySelector('#refusals tbody');
      clear(tbody);
      var items = body.items || [];
      if (!items.length) tbody.appendChild(el('tr', null, [el('td', {colspan: 6, 'class': 'muted'}, ['No refusals.'])]));
      items.forEach(function (r) {
        tbody.appendChild(el('tr', {'data-request-id': r.request_id, 'data-status': r.status}, [
          el('td', {'data-label': 'Time'}, [text(r.ts || r.time)]),
          el('td', {'data-label': 'Status'}, [el('span', {'class': 'tag bad'}, [text(r.status)])]),
          el('td', {'data-label': 'Caller'}, [text(r.caller)]),
          el('td', {'data-label': 'Request'}, [text(r.method) + ' ' + text(r.path)]),
          el('td', {'data-label': 'Reason'}, [text(r.error || r.decision)]),
          el('td', {'data-label': 'Request id'}, [el('code', null, [text(r.request_id)])])
        ]));
      });
    });
  }

  // ---- session ----
  function start() {
    stop();
    $('login').hidden = true;
    $('console').hidden = false;
    $('logout').hidden = false;
    var all = function () {
      refresh('status', loadStatus);
      refresh('callers', loadCallers);
      refresh('limits', loadLimits);
      refresh('usage', loadUsage);
      refresh('refusals', loadRefusals);
    };
    all();
    state.timers.push(setInterval(function () { refresh('limits', loadLimits); refresh('status', loadStatus); }, 5000));
    state.timers.push(setInterval(function () { refresh('refusals', loadRefusals); }, 10000));
    state.timers.push(setInterval(function () { refresh('usage', loadUsage); refresh('callers', loadCallers); }, 30000));
  }

  function stop() {
    state.timers.forEach(clearInterval);
    state.timers = [];
  }

  function logout(message) {
    stop();
    try { window.sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage off: nothing kept */ }
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    state.usage = null;
    ['status', 'callers', 'limits'].forEach(function (id) { clear($(id)); });
    clear(document.querySelector('#usage-totals tbody'));
    clear(document.querySelector('#refusals tbody'));
    $('console').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('updated').textContent = '';
    $('token').value = '';
    $('token').focus();
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('login').addEventListener('submit', function (event) {
      event.preventDefault();
      var value = $('token').value.trim();
      if (!value) return;
      try {
        window.sessionStorage.setItem(TOKEN_KEY, value);
      } catch (e) {
        $('login-error').textContent = 'This browser does not allow session storage; the console cannot keep the token.';
        return;
      }
      $('token').value = '';
      start();
    });
    $('logout').addEventListener('click', function () { logout('Logged out.'); });
    $('usage-metric').addEventListener('change', renderChart);
    // Dark mode switched while open: redraw with the new colours.
    if (window.matchMedia) {
      var dark = window.matchMedia('(prefers-color-scheme: dark)');
      var redraw = function () { renderChart(); };
      if (dark.addEventListener) dark.addEventListener('change', redraw); else if (dark.addListener) dark.addListener(redraw);
    }
    if (token()) start(); else logout('');
  });
})();
