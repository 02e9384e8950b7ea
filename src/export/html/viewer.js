// audit-trail report: sorting, filtering and paging of the records table.
// Record values are only ever read from the document as text (textContent)
// and written back as text; nothing read from a record is run, parsed as
// markup or used as a URL. Without this script the table shows every record.
(function () {
  'use strict';
  var first = document.getElementById('records');
  var tools = document.getElementById('tools');
  var view = document.getElementById('view');
  if (!first || !tools || !view) return;
  var rows = Array.prototype.slice.call(document.querySelectorAll('table.at tbody.r'));
  var total = rows.length;
  if (total === 0) return;
  // The file holds the records in several tables (see the export); the page
  // shows one table, with the rows of the current page in it.
  var chunks = Array.prototype.slice.call(document.querySelectorAll('div.chunk'));
  var table = first.cloneNode(false);
  table.appendChild(first.querySelector('colgroup').cloneNode(true));
  table.appendChild(first.tHead.cloneNode(true));
  chunks[0].parentNode.insertBefore(table, chunks[0]);
  chunks.forEach(function (c) { c.remove(); });
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
  var columns = [];
  var full = null;
  var order = rows.map(function (_, i) { return i; });
  var shown = order;
  var displayed = [];
  var page = 0;
  var size = 500;
  var printing = false;

  function column(i) {
    if (!columns[i]) columns[i] = rows.map(function (b) { return b.rows[0].cells[i].textContent; });
    return columns[i];
  }
  function lowerColumn(i) {
    var key = 'l' + i;
    if (!columns[key]) columns[key] = column(i).map(function (t) { return t.toLowerCase(); });
    return columns[key];
  }
  function fullText() {
    if (!full) full = rows.map(function (b) { return b.textContent.toLowerCase(); });
    return full;
  }
  function el(name, text) {
    var e = document.createElement(name);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Controls: a full-text box, a filter per chosen column, page size and paging.
  var search = el('input');
  search.type = 'search';
  search.placeholder = 'words in any field';
  var searchLabel = el('label', 'Search all fields');
  searchLabel.appendChild(search);
  tools.appendChild(searchLabel);
  var filters = [];
  heads.forEach(function (th, i) {
    var kind = th.getAttribute('data-filter');
    if (!kind) return;
    var label = el('label', th.textContent);
    label.className = 'col';
    var input;
    if (kind === 'outcome') {
      input = el('select');
      [['', 'any'], ['success', 'success'], ['failure', 'failure'], ['-', '(none)']].forEach(function (o) {
        var opt = el('option', o[1]);
        opt.value = o[0];
        input.appendChild(opt);
      });
      filters.push({ input: input, test: function (v) {
        return function (r) { var t = column(i)[r]; return v === '-' ? t === '' : t === v; };
      } });
    } else {
      input = el('input');
      input.type = 'search';
      var list = el('datalist');
      list.id = 'values-' + i;
      label.appendChild(list);
      input.setAttribute('list', list.id);
      // Suggestions: the first 200 distinct values, gathered when first needed.
      input.addEventListener('focus', function () {
        if (list.childElementCount) return;
        var seen = new Set();
        var values = column(i);
        for (var r = 0; r < values.length && seen.size < 200; r++) {
          if (values[r] !== '' && !seen.has(values[r])) {
            seen.add(values[r]);
            var opt = el('option');
            opt.value = values[r];
            list.appendChild(opt);
          }
        }
      });
      filters.push({ input: input, test: function (v) {
        v = v.toLowerCase();
        return function (r) { return lowerColumn(i)[r].indexOf(v) !== -1; };
      } });
    }
    input.setAttribute('aria-label', 'Filter ' + th.textContent);
    label.appendChild(input);
    tools.appendChild(label);
  });
  var sizes = el('select');
  [['100', '100'], ['500', '500'], ['1000', '1000'], ['0', 'all']].forEach(function (o) {
    var opt = el('option', o[1]);
    opt.value = o[0];
    if (o[0] === '500') opt.selected = true;
    sizes.appendChild(opt);
  });
  var sizeLabel = el('label', 'Rows per page');
  sizeLabel.appendChild(sizes);
  tools.appendChild(sizeLabel);
  var prev = el('button', '\u2190 Previous');
  var next = el('button', 'Next \u2192');
  prev.type = next.type = 'button';
  tools.appendChild(prev);
  tools.appendChild(next);
  tools.hidden = false;

  function render() {
    var from = printing || size === 0 ? 0 : page * size;
    var to = printing || size === 0 ? shown.length : Math.min(shown.length, from + size);
    displayed.forEach(function (b) { b.remove(); });
    var frag = document.createDocumentFragment();
    displayed = [];
    for (var k = from; k < to; k++) {
      displayed.push(rows[shown[k]]);
      frag.appendChild(rows[shown[k]]);
    }
    table.appendChild(frag);
    var n = shown.length;
    var text;
    if (n === 0) text = 'No record matches, of ' + total + ' in this export';
    else if (from === 0 && to === n) text = n === 1 ? 'Showing the one record' : 'Showing all ' + n + ' records';
    else text = 'Showing records ' + (from + 1) + '\u2013' + to + ' of ' + n;
    if (n !== total && n !== 0) text += (n === 1 ? ' that matches' : ' that match') + ', of ' + total + ' in this export';
    var active = [];
    if (search.value.trim()) active.push('text \u201C' + search.value.trim() + '\u201D');
    filters.forEach(function (f) {
      if (f.input.value) active.push(f.input.getAttribute('aria-label').slice(7) + ' \u201C' + f.input.value + '\u201D');
    });
    if (active.length) text += ' (filtered in this page: ' + active.join(', ') + ')';
    view.textContent = text + '.';
    prev.disabled = printing || from === 0;
    next.disabled = printing || to >= shown.length;
  }

  function apply() {
    var q = search.value.trim().toLowerCase();
    var tests = filters.filter(function (f) { return f.input.value !== ''; })
      .map(function (f) { return f.test(f.input.value); });
    if (q) {
      var text = fullText();
      tests.unshift(function (r) { return text[r].indexOf(q) !== -1; });
    }
    shown = tests.length ? order.filter(function (r) { return tests.every(function (t) { return t(r); }); }) : order;
    page = 0;
    render();
  }

  function sortBy(i) {
    var th = heads[i];
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var kind = th.getAttribute('data-sort');
    var values = column(i);
    var keys = values;
    if (kind === 'number') keys = values.map(function (t) { return Number(t); });
    else if (kind === 'time') keys = values.map(function (t) { var ms = Date.parse(t); return isNaN(ms) ? -Infinity : ms; });
    var cmp = kind ? function (a, b) { return keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : 0; }
                   : function (a, b) { return collator.compare(keys[a], keys[b]); };
    order = order.slice().sort(function (a, b) { return dir * cmp(a, b) || a - b; });
    apply();
  }

  // Headers stay plain text (a printed table repeats them on every page).
  heads.forEach(function (th, i) {
    th.tabIndex = 0;
    th.title = 'Sort by ' + th.textContent;
    th.classList.add('sort');
    th.addEventListener('click', function () { sortBy(i); });
    th.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(i); }
    });
  });
  var timer = 0;
  function later() { clearTimeout(timer); timer = setTimeout(apply, total > 20000 ? 300 : 60); }
  search.addEventListener('input', later);
  filters.forEach(function (f) { f.input.addEventListener(f.input.tagName === 'SELECT' ? 'change' : 'input', later); });
  sizes.addEventListener('change', function () { size = Number(sizes.value); page = 0; render(); });
  prev.addEventListener('click', function () { if (page > 0) { page--; render(); } });
  next.addEventListener('click', function () { if ((page + 1) * size < shown.length) { page++; render(); } });
  // Printing prints every record that matches, not just the page on screen.
  function printMode(on) { if (printing !== on) { printing = on; render(); } }
  window.addEventListener('beforeprint', function () { printMode(true); });
  window.addEventListener('afterprint', function () { printMode(false); });
  if (window.matchMedia) {
    var mq = window.matchMedia('print');
    if (mq.addEventListener) mq.addEventListener('change', function (e) { printMode(e.matches); });
  }
  render();
})();
