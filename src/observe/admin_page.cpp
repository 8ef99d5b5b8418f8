#include "observe/admin_page.hpp"

#include "core/base64.hpp"

#include <openssl/evp.h>

#include <string_view>

namespace lakemesh::observe::detail {
namespace {

// No external resources: system fonts only, no images, one inline style and one inline script.
constexpr std::string_view style = R"css(
:root { color-scheme: light; --line: #d0d7de; --muted: #57606a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       background: #f6f8fa; }
header { padding: 12px 20px; background: #24292f; color: #fff; display: flex; flex-wrap: wrap;
         gap: 4px 24px; align-items: baseline; }
header h1 { font-size: 18px; margin: 0; }
header p { margin: 0; }
#ready.ok { color: #3fb950; font-weight: 600; }
#ready.bad { color: #ff7b72; font-weight: 600; }
#consul, #updated { color: #c9d1d9; }
#fetch-error { color: #ff7b72; }
main { padding: 8px 20px 24px; display: grid; gap: 16px;
       grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 4px 0 8px; }
.summary { color: var(--muted); margin: 0 0 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line);
         font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; font-weight: 600; }
td.empty { color: var(--muted); font-style: italic; }
td.owner { font-weight: 600; }
.yes { color: #1a7f37; }
.no, .ejected, .open { color: #cf222e; font-weight: 600; }
.half_open { color: #9a6700; font-weight: 600; }
[hidden] { display: none !important; }
)css";

constexpr std::string_view script = R"js(
(function () {
  'use strict';
  var REFRESH_MS = 2000;

  function byId(id) { return document.getElementById(id); }
  function text(v) { return v === undefined || v === null ? '' : String(v); }
  function list(v) { return Array.isArray(v) ? v : []; }
  // Data only ever reaches the page through textContent: nothing is parsed as HTML.
  function cell(row, value, cls) {
    var td = document.createElement('td');
    td.textContent = text(value);
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }
  function clearBody(id) {
    var b = byId(id).tBodies[0];
    while (b.firstChild) { b.removeChild(b.firstChild); }
    return b;
  }
  function emptyRow(b, columns, message) {
    var td = cell(b.insertRow(), message, 'empty');
    td.colSpan = columns;
  }
  // Spread by the golden angle, so that owners with similar names get distinct colours.
  function hue(s) {
    var h = 0;
    for (var i = 0; i < s.length; i++) { h = (h * 31 + s.charCodeAt(i)) % 65521; }
    return Math.round(h * 137.508) % 360;
  }
  function yesNo(row, value, yesClass, noClass) {
    cell(row, value ? 'yes' : 'no', value ? yesClass : noClass);
  }

  function renderHeader(s) {
    var svc = s.service || {};
    byId('service').textContent = 'lakemesh: ' + text(svc.name) + (svc.id ? ' (' + svc.id + ')' : '');
    var ready = byId('ready');
    ready.textContent = svc.ready ? 'ready' : 'not ready: ' + (text(svc.not_ready_reason) || 'no reason given');
    ready.className = svc.ready ? 'ok' : 'bad';
    var consul = s.consul || {};
    byId('consul').textContent = 'Consul ' + text(consul.address) +
        (consul.last_error ? ' (last error: ' + consul.last_error + ')' : '');
    byId('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }

  function renderPartitions(p) {
    var table = byId('partitions');
    var b = clearBody('partitions');
    if (!p) {
      table.hidden = true;
      byId('no-partitions').hidden = false;
      byId('partitions-summary').textContent = '';
      return;
    }
    table.hidden = false;
    byId('no-partitions').hidden = true;
    byId('partitions-summary').textContent = 'cluster ' + text(p.cluster) + ': ' + text(p.count) +
        ' partitions, ' + text(p.owned_here) + ' owned here';
    var rows = list(p.table);
    if (!rows.length) { emptyRow(b, 4, 'no assignment yet'); }
    rows.forEach(function (e) {
      var r = b.insertRow();
      r.setAttribute('data-partition', text(e.partition));
      cell(r, e.partition, 'partition');
      var owner = cell(r, e.owner || '-', 'owner');
      if (e.owner) { owner.style.backgroundColor = 'hsl(' + hue(String(e.owner)) + ', 70%, 88%)'; }
      cell(r, e.state, 'state');
      cell(r, e.token, 'token');
    });
  }

  function renderMembers(members) {
    var b = clearBody('members');
    if (!members.length) { emptyRow(b, 3, 'no members'); }
    members.forEach(function (m) {
      var r = b.insertRow();
      cell(r, m.node, 'node');
      cell(r, m.address, 'address');
      cell(r, m.weight, 'weight');
    });
  }

  function renderServices(services) {
    var b = clearBody('services');
    if (!services.length) { emptyRow(b, 5, 'no dependencies called yet'); }
    services.forEach(function (s) {
      var endpoints = list(s.endpoints);
      if (!endpoints.length) {
        var r = b.insertRow();
        cell(r, s.name, 'service');
        cell(r, 'no endpoints', 'empty').colSpan = 4;
      }
      endpoints.forEach(function (e) {
        var r = b.insertRow();
        cell(r, s.name, 'service');
        cell(r, e.address, 'address');
        yesNo(r, e.healthy, 'yes', 'no');
        cell(r, e.ejected ? 'ejected' : 'no', e.ejected ? 'ejected' : '');
        cell(r, e.in_flight, 'in-flight');
      });
    });
  }

  function renderBreakers(services) {
    var b = clearBody('breakers');
    if (!services.length) { emptyRow(b, 5, 'no dependencies called yet'); }
    services.forEach(function (s) {
      var r = b.insertRow();
      cell(r, s.name, 'service');
      cell(r, s.breaker, 'breaker ' + text(s.breaker).replace(/[^a-z_]/g, ''));
      cell(r, s.bulkhead_in_use, 'bulkhead');
      cell(r, s.calls, 'calls');
      cell(r, s.failures, 'failures');
    });
  }

  function renderErrors(errors) {
    var b = clearBody('errors');
    if (!errors.length) { emptyRow(b, 2, 'none'); }
    errors.forEach(function (e) {
      var r = b.insertRow();
      cell(r, e.at, 'at');
      cell(r, e.what, 'what');
    });
  }

  function render(s) {
    renderHeader(s);
    renderPartitions(s.partitions);
    renderMembers(list(s.members));
    renderServices(list(s.services));
    renderBreakers(list(s.services));
    renderErrors(list(s.last_errors));
  }

  function refresh() {
    fetch('status', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.json();
      })
      .then(function (s) {
        render(s);
        byId('fetch-error').textContent = '';
      })
      .catch(function (e) {
        byId('fetch-error').textContent = 'status unavailable: ' + e.message;
      })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }

  refresh();
})();
)js";

constexpr std::string_view body = R"html(<body>
<header>
<h1 id="service">lakemesh</h1>
<p id="ready">loading</p>
<p id="consul"></p>
<p id="updated"></p>
<p id="fetch-error"></p>
</header>
<main>
<section class="wide">
<h2>Partition map</h2>
<p class="summary" id="partitions-summary"></p>
<p class="summary" id="no-partitions" hidden>no partitions</p>
<table id="partitions">
<thead><tr><th>Partition</th><th>Owner</th><th>State</th><th>Token</th></tr></thead>
<tbody></tbody>
</table>
</section>
<section>
<h2>Members</h2>
<table id="members">
<thead><tr><th>Node</th><th>Address</th><th>Weight</th></tr></thead>
<tbody></tbody>
</table>
</section>
<section>
<h2>Breakers</h2>
<table id="breakers">
<thead><tr><th>Service</th><th>Breaker</th><th>Bulkhead in use</th><th>Calls</th><th>Failures</th></tr></thead>
<tbody></tbody>
</table>
</section>
<section class="wide">
<h2>Dependencies and their endpoints</h2>
<table id="services">
<thead><tr><th>Service</th><th>Endpoint</th><th>Healthy</th><th>Ejected</th><th>In flight</th></tr></thead>
<tbody></tbody>
</table>
</section>
<section class="wide">
<h2>Last errors</h2>
<table id="errors">
<thead><tr><th>At</th><th>What</th></tr></thead>
<tbody></tbody>
</table>
</section>
</main>
)html";

std::string sha256_source(std::string_view text) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(text.data(), text.size(), digest, &n, EVP_sha256(), nullptr);
    return "'sha256-" +
           lakemesh::detail::base64_encode({reinterpret_cast<const char*>(digest), n}) + "'";
}

admin_page build() {
    admin_page p;
    p.html.reserve(style.size() + script.size() + body.size() + 400);
    p.html += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    p.html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    p.html += "<title>lakemesh admin</title>\n<style>";
    p.html += style;
    p.html += "</style>\n</head>\n";
    p.html += body;
    p.html += "<script>";
    p.html += script;
    p.html += "</script>\n</body>\n</html>\n";
    // The hashes cover exactly the text between the tags. Style set through the CSSOM (the
    // owner colours) is not subject to style-src.
    p.content_security_policy = "default-src 'none'; script-src " + sha256_source(script) +
                                "; style-src " + sha256_source(style) +
                                "; connect-src 'self'; img-src 'self'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'";
    return p;
}

}  // namespace

const admin_page& the_admin_page() {
    static const admin_page page = build();
    return page;
}

}  // namespace lakemesh::observe::detail
