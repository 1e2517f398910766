
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dialogue-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var PAGE = 200, limit = PAGE, selected = null;
  function value(name) { var e = $("filter-" + name); return e ? e.value : ""; }
  function matches(d) {
    var v = value("service");
    if (v && d.services.indexOf(v) < 0) return false;
    v = value("outcome");
    if (v && d.resolution_status !== v) return false;
    v = value("user-emotion");
    if (v && d.user_emotion !== v) return false;
    v = value("assistant-emotion");
    if (v && d.assistant_emotion !== v) return false;
    v = value("check");
    if (v === "(none)") { if (d.checks.length) return false; }
    else if (v && !d.checks.some(function (c) { return c.check === v; })) return false;
    v = value("judge");
    if (v === "(unscored)") { if (d.judge) return false; }
    else if (v && !(d.judge && String(d.judge.overall) === v)) return false;
    return true;
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function facts(parent, pairs) {
    var dl = el("dl");
    pairs.forEach(function (p) { dl.appendChild(el("dt", p[0])); dl.appendChild(el("dd", p[1])); });
    parent.appendChild(dl);
  }
  function show(d, row) {
    selected = d.seq;
    Array.prototype.forEach.call(document.querySelectorAll("#dialogue-rows tr"), function (tr) {
      tr.classList.toggle("selected", tr === row);
    });
    var box = $("dialogue-detail");
    box.textContent = "";
    box.appendChild(el("h3", d.dialogue_id));
    box.appendChild(el("h4", "Scenario"));
    box.appendChild(el("p", d.generated_scenario));
    facts(box, [
      ["category", d.scenario_category], ["services", d.services.join(", ")],
      ["outcome", d.resolution_status], ["user emotion", d.user_emotion],
      ["assistant emotion", d.assistant_emotion], ["regions", d.regions.join(", ")],
      ["time", d.time_slot + ", " + d.specific_time]
    ]);
    box.appendChild(el("h4", "Persona"));
    box.appendChild(el("p", d.persona));
    box.appendChild(el("h4", "Provenance"));
    facts(box, [
      ["store sequence", d.seq],
      ["work item", d.item_index === null ? "imported (dgen import)" : d.item_index],
      ["attempt", d.attempt], ["base dialogue", d.base_dialogue_id], ["model", d.model],
      ["temperature", d.temperature], ["top_p", d.top_p],
      ["frequency / presence penalty", d.frequency_penalty + " / " + d.presence_penalty],
      ["seed", d.seed],
      ["tokens", d.usage.prompt_tokens + " prompt + " + d.usage.completion_tokens + " completion in " + d.usage.calls + " calls"]
    ]);
    box.appendChild(el("h4", "Checks"));
    if (d.checks.length) {
      var ul = el("ul");
      d.checks.forEach(function (c) { ul.appendChild(el("li", c.check + ": " + c.detail)); });
      box.appendChild(ul);
    } else box.appendChild(el("p", "none flagged", "note"));
    box.appendChild(el("h4", "Judge"));
    if (d.judge) {
      var pairs = [["overall", d.judge.overall]];
      Object.keys(d.judge.scores).forEach(function (k) { pairs.push([k, d.judge.scores[k]]); });
      pairs.push(["reasoning", d.judge.reasoning], ["judge model", d.judge.model], ["rubric version", d.judge.prompt_version]);
      facts(box, pairs);
    } else box.appendChild(el("p", "not scored", "note"));
    box.appendChild(el("h4", "Turns"));
    d.turns.forEach(function (t, i) {
      var div = el("div", null, "turn");
      var user = el("div", (i + 1) + ". USER: " + t.utterance);
      user.appendChild(el("span", t.intent, "intent"));
      div.appendChild(user);
      div.appendChild(el("div", "ASSISTANT: " + t.assistant_response, "assistant"));
      box.appendChild(div);
    });
  }
  function render() {
    var body = $("dialogue-rows");
    body.textContent = "";
    var hits = data.filter(matches);
    $("browser-count").textContent = hits.length + " of " + data.length + " dialogues match the filters";
    var first = null;
    hits.slice(0, limit).forEach(function (d) {
      var tr = el("tr");
      tr.tabIndex = 0;
      [d.seq, d.dialogue_id, d.services.join(", "), d.resolution_status,
       d.user_emotion + " / " + d.assistant_emotion,
       d.checks.map(function (c) { return c.check; }).join(", ") || "-",
       d.judge ? d.judge.overall : "-"].forEach(function (t) { tr.appendChild(el("td", t)); });
      tr.addEventListener("click", function () { show(d, tr); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") show(d, tr); });
      body.appendChild(tr);
      if (first === null || d.seq === selected) first = [d, tr];
    });
    $("more").hidden = hits.length <= limit;
    if (first) show(first[0], first[1]); else $("dialogue-detail").textContent = "";
  }
  ["service", "outcome", "user-emotion", "assistant-emotion", "check", "judge"].forEach(function (f) {
    var e = $("filter-" + f);
    if (e) e.addEventListener("change", function () { limit = PAGE; render(); });
  });
  $("more").addEventListener("click", function () { limit += PAGE; render(); });
  render();
  document.documentElement.setAttribute("data-ready", "1");
})();
