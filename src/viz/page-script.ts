/**
 * The page's only script (inline, no library): the scrubber. At a chosen moment it finds
 * every lane's state, marks those states on the statecharts (`current`, and which tasks
 * are there on the `who` line), the slices on the timeline (`now`), moves the cursor, and
 * lists the states. Data comes from the page's `<script type="application/json" id="viz-data">`.
 */
export const PAGE_SCRIPT = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('viz-data').textContent);
  var range = document.getElementById('scrubber');
  var readout = document.getElementById('now-time');
  var list = document.getElementById('now-states');
  var cursor = document.getElementById('cursor');
  var timeline = document.getElementById('timeline');
  var times = data.times;
  function fmt(ms) {
    return ms >= 1000 ? (ms / 1000).toFixed(3) + ' s' : ms.toFixed(1) + ' ms';
  }
  function xOf(t) {
    var ts = data.scale.ts, xs = data.scale.xs;
    if (t <= ts[0]) return xs[0];
    for (var i = 1; i < ts.length; i++) {
      if (t <= ts[i]) {
        var span = ts[i] - ts[i - 1];
        return xs[i - 1] + (span > 0 ? ((t - ts[i - 1]) / span) * (xs[i] - xs[i - 1]) : 0);
      }
    }
    return xs[xs.length - 1];
  }
  function tOf(x) {
    var ts = data.scale.ts, xs = data.scale.xs;
    if (x <= xs[0]) return ts[0];
    for (var i = 1; i < xs.length; i++) {
      if (x <= xs[i]) {
        var w = xs[i] - xs[i - 1];
        return ts[i - 1] + (w > 0 ? ((x - xs[i - 1]) / w) * (ts[i] - ts[i - 1]) : 0);
      }
    }
    return ts[ts.length - 1];
  }
  function stateAt(lane, t) {
    var found = null;
    for (var i = 0; i < lane.slices.length; i++) {
      if (lane.slices[i][1] <= t) found = lane.slices[i][0];
      else break;
    }
    return found;
  }
  function covers(path, state) {
    return state === path || state.indexOf(path + '.') === 0;
  }
  function update(t) {
    readout.textContent = '+' + fmt(t);
    var now = [];
    for (var i = 0; i < data.lanes.length; i++) {
      var lane = data.lanes[i];
      now.push({ lane: lane, state: stateAt(lane, t) });
    }
    var nodes = document.querySelectorAll('[data-state-node]');
    for (var n = 0; n < nodes.length; n++) {
      var g = nodes[n];
      var path = g.getAttribute('data-state');
      var machine = g.getAttribute('data-machine');
      var who = [];
      if (path !== '*') {
        for (var k = 0; k < now.length; k++) {
          if (now[k].lane.machine === machine && now[k].state && covers(path, now[k].state))
            who.push(now[k].lane.short);
        }
      }
      g.classList.toggle('current', who.length > 0);
      var w = g.querySelector('text.who');
      if (w) {
        var text = machine === 'coordinator' ? (who.length ? '◀ now' : '') : who.join(', ');
        w.textContent = text.length > 40 ? who.length + ' tasks' : text;
      }
    }
    var slices = document.querySelectorAll('#timeline [data-slice]');
    for (var s = 0; s < slices.length; s++) {
      var el = slices[s];
      var a = parseFloat(el.getAttribute('data-start')), b = parseFloat(el.getAttribute('data-end'));
      el.classList.toggle('now', a <= t && (t < b || (a === b && a === t)));
    }
    if (cursor) {
      var x = xOf(t);
      cursor.setAttribute('x1', x);
      cursor.setAttribute('x2', x);
    }
    list.textContent = '';
    for (var j = 0; j < now.length; j++) {
      var li = document.createElement('li');
      li.setAttribute('data-now-lane', now[j].lane.id);
      var b1 = document.createElement('b');
      b1.textContent = now[j].lane.short + ': ';
      li.appendChild(b1);
      li.appendChild(document.createTextNode(now[j].state || '(not started)'));
      list.appendChild(li);
    }
  }
  function set(t) {
    range.value = String(t);
    update(parseFloat(range.value));
    history.replaceState(null, '', '#t=' + parseFloat(range.value).toFixed(3));
  }
  range.addEventListener('input', function () {
    set(parseFloat(range.value));
  });
  function step(dir) {
    var t = parseFloat(range.value);
    var next = null;
    if (dir > 0) {
      for (var i = 0; i < times.length; i++) if (times[i] > t + 1e-6) { next = times[i]; break; }
    } else {
      for (var j = times.length - 1; j >= 0; j--) if (times[j] < t - 1e-6) { next = times[j]; break; }
    }
    if (next !== null) set(next);
  }
  document.getElementById('step-prev').addEventListener('click', function () { step(-1); });
  document.getElementById('step-next').addEventListener('click', function () { step(1); });
  document.getElementById('step-first').addEventListener('click', function () { set(0); });
  document.getElementById('step-last').addEventListener('click', function () { set(data.duration); });
  if (timeline) {
    timeline.addEventListener('click', function (ev) {
      var pt = timeline.createSVGPoint();
      pt.x = ev.clientX;
      pt.y = ev.clientY;
      var p = pt.matrixTransform(timeline.getScreenCTM().inverse());
      if (p.x >= data.scale.xs[0]) set(tOf(p.x));
    });
  }
  var m = /#t=([0-9.]+)/.exec(location.hash);
  set(m ? parseFloat(m[1]) : data.initial);
})();
`;
