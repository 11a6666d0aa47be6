"""`GET /`: a small page that sends an image and a text to /v1/classify and shows the labels with their
probabilities as bars, and the raw answer. The page itself is static and public (a browser cannot send
a Bearer header when it opens a URL); with an API key set, the key typed into it goes with each call."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mmlearn</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
 #drop { border: 2px dashed #888; border-radius: .5rem; padding: 1.5rem; text-align: center; }
 #drop.over { background: #eef; }
 #preview { max-width: 12rem; max-height: 12rem; display: none; margin: .5rem auto; }
 textarea, input[type=password] { width: 100%; box-sizing: border-box; margin: .5rem 0; }
 .bar { background: #ddd; border-radius: .25rem; height: 1rem; }
 .fill { background: #4a7; height: 1rem; border-radius: .25rem; }
 li.predicted { font-weight: bold; }
 #error { color: #b00; white-space: pre-wrap; }
 pre { background: #f4f4f4; padding: .5rem; white-space: pre-wrap; }
</style>
</head>
<body>
<h1 id="model">mmlearn</h1>
<p id="about"></p>
<div id="drop">Drop an image here, or <input id="image" type="file" accept="image/*">
 <img id="preview" alt="the image sent"></div>
<textarea id="text" rows="3" placeholder="Text"></textarea>
<input id="key" type="password" placeholder="API key (only if the server requires one)">
<button id="submit">Classify</button>
<p id="error"></p>
<ul id="labels"></ul>
<h3>Raw answer</h3>
<pre id="raw"></pre>
<script>
let image = null;
const $ = (id) => document.getElementById(id);
const headers = () => {
  const h = {"Content-Type": "application/json"};
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
};
function readImage(file) {
  const reader = new FileReader();
  reader.onload = () => { image = reader.result; $("preview").src = image; $("preview").style.display = "block"; };
  reader.readAsDataURL(file);
}
$("image").addEventListener("change", (e) => { if (e.target.files[0]) readImage(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) readImage(e.dataTransfer.files[0]);
});
async function describe() {
  const r = await fetch("/v1/models", {headers: headers()});
  if (!r.ok) return;
  const m = (await r.json()).data[0];
  $("model").textContent = m.id;
  $("about").textContent = m.task + " on " + m.modality + ", decoding=" + m.decoding
    + (m.labels ? ": " + m.labels.join(", ") : "");
}
function show(answer) {
  const list = $("labels");
  list.innerHTML = "";
  const chosen = new Set(answer.labels || []);
  const scores = answer.scores || {};
  const names = Object.keys(scores).length ? Object.keys(scores) : [...chosen];
  names.sort((a, b) => (scores[b] ?? 0) - (scores[a] ?? 0));
  for (const name of names) {
    const li = document.createElement("li");
    li.dataset.label = name;
    if (chosen.has(name)) li.className = "predicted";
    const p = scores[name];
    li.innerHTML = "<span class=name></span> <span class=p></span><div class=bar><div class=fill></div></div>";
    li.querySelector(".name").textContent = name;
    li.querySelector(".p").textContent = p === undefined ? "" : (100 * p).toFixed(1) + "%";
    li.querySelector(".fill").style.width = p === undefined ? "100%" : (100 * p) + "%";
    list.appendChild(li);
  }
  $("raw").textContent = answer.output;
  list.dataset.done = "true";
}
$("submit").addEventListener("click", async () => {
  $("error").textContent = ""; $("labels").dataset.done = "";
  const item = {text: $("text").value || null};
  if (image) item.image = image;
  const r = await fetch("/v1/classify", {method: "POST", headers: headers(), body: JSON.stringify(item)});
  const body = await r.json();
  if (!r.ok) { $("error").textContent = body.error ? body.error.message : JSON.stringify(body); return; }
  await describe();
  show(body);
});
$("key").addEventListener("change", describe);
describe();
</script>
</body>
</html>
"""


def add_page(app: FastAPI) -> None:
    """Replaces LitServe's `GET /` ("litserve running") with the page."""
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/"]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)
