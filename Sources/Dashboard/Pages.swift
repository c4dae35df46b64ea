// The pages the binary serves: plain HTML, CSS and JavaScript written for this project, no build step,
// no third-party front-end code, nothing fetched from elsewhere (the Content-Security-Policy says so).
import Hummingbird

enum Pages {
    /// Headers of every page and script: its type, and a policy that allows this server only.
    static func headers(type: String) -> HTTPFields {
        [
            .contentType: type,
            .contentSecurityPolicy:
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'",
            .xContentTypeOptions: "nosniff",
            .cacheControl: "no-cache",
        ]
    }

    static func response(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: headers(type: type), body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// GET / (the draw-a-digit page), /draw.js and /style.css.
    static func addDrawPage(to router: Router<some RequestContext>, title: String) {
        router.get("/") { _, _ in response(drawPage(title: title), type: "text/html; charset=utf-8") }
        router.get("draw.js") { _, _ in response(drawScript, type: "text/javascript; charset=utf-8") }
        router.get("style.css") { _, _ in response(style, type: "text/css; charset=utf-8") }
    }

    static func drawPage(title: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(title)</title>
        <link rel="stylesheet" href="style.css">
        </head>
        <body>
        <header><h1>\(title)</h1><span class="muted">draw a digit, or choose an image file</span></header>
        <main>
        \(drawBox)
        </main>
        <script src="draw.js"></script>
        </body>
        </html>
        """
    }

    /// The draw-a-digit box: a pad, the answer, the ten probabilities and the 28x28 input the network saw.
    static let drawBox = """
        <section class="card" id="draw">
          <h2>What digit is this?</h2>
          <div class="draw">
            <div>
              <canvas id="pad" width="280" height="280" aria-label="drawing pad"></canvas>
              <div class="buttons">
                <button id="clear" type="button">Clear</button>
                <label class="file">Image file… <input id="file" type="file" accept="image/png,image/jpeg,.pgm,.ppm,.pnm"></label>
              </div>
            </div>
            <div class="answer">
              <div><span id="digit" class="digit">–</span> <span id="confidence" class="muted"></span></div>
              <div id="doubt" class="muted"></div>
              <div id="bars" class="bars"></div>
              <figure><img id="input" alt="the 28x28 input the network saw" width="112" height="112">
              <figcaption class="muted">what the network saw (28×28)</figcaption></figure>
              <div id="error" class="error" role="alert"></div>
            </div>
          </div>
        </section>
        """

    static let drawScript = """
        "use strict";
        // The draw-a-digit box: strokes on a canvas, sent as a PNG to POST predict.
        (function () {
          const pad = document.getElementById("pad");
          if (!pad) return;
          const ink = pad.getContext("2d");
          const bars = document.getElementById("bars");
          const rows = [];
          for (let d = 0; d < 10; d++) {
            const row = document.createElement("div");
            row.className = "bar";
            row.innerHTML = "<span>" + d + "</span><span class='track'><span class='fill'></span></span><span class='value'></span>";
            bars.appendChild(row);
            rows.push(row);
          }
          function clear() {
            ink.fillStyle = "#000";
            ink.fillRect(0, 0, pad.width, pad.height);
            document.getElementById("digit").textContent = "–";
            document.getElementById("confidence").textContent = "";
            document.getElementById("doubt").textContent = "";
            document.getElementById("error").textContent = "";
            document.getElementById("input").removeAttribute("src");
            rows.forEach(function (row) { row.querySelector(".fill").style.width = "0"; row.querySelector(".value").textContent = ""; });
            drawn = false;
          }
          let drawing = false, drawn = false, last = null;
          function point(event) {
            const box = pad.getBoundingClientRect();
            return { x: (event.clientX - box.left) * pad.width / box.width, y: (event.clientY - box.top) * pad.height / box.height };
          }
          pad.addEventListener("pointerdown", function (event) {
            pad.setPointerCapture(event.pointerId);
            drawing = true;
            last = point(event);
            ink.fillStyle = "#fff";
            ink.beginPath();
            ink.arc(last.x, last.y, 9, 0, 2 * Math.PI);
            ink.fill();
            drawn = true;
            event.preventDefault();
          });
          pad.addEventListener("pointermove", function (event) {
            if (!drawing) return;
            const next = point(event);
            ink.strokeStyle = "#fff";
            ink.lineWidth = 18;
            ink.lineCap = "round";
            ink.beginPath();
            ink.moveTo(last.x, last.y);
            ink.lineTo(next.x, next.y);
            ink.stroke();
            last = next;
            event.preventDefault();
          });
          function finish() {
            if (!drawing) return;
            drawing = false;
            const question = begin();
            pad.toBlob(function (blob) { ask(question, blob); }, "image/png");
          }
          pad.addEventListener("pointerup", finish);
          pad.addEventListener("pointercancel", finish);
          document.getElementById("clear").addEventListener("click", clear);
          document.getElementById("file").addEventListener("change", function (event) {
            const file = event.target.files[0];
            if (file) ask(begin(), file);
          });
          // Each stroke's end asks again; only the latest question's answer is shown.
          // window.pendingPredictions lets tests (and people) see when the page is idle.
          let asked = 0;
          window.pendingPredictions = 0;
          function begin() {
            window.pendingPredictions++;
            return ++asked;
          }
          function ask(question, body) {
            fetch("predict", { method: "POST", body: body, headers: { "Content-Type": "application/octet-stream" } })
              .then(function (response) {
                return response.json().then(function (json) { return { ok: response.ok, json: json }; });
              })
              .then(function (reply) {
                if (question !== asked) return;
                if (!reply.ok) throw new Error(reply.json.error ? reply.json.error.message : "the server refused the image");
                show(reply.json);
              })
              .catch(function (error) { if (question === asked) document.getElementById("error").textContent = error.message; })
              .finally(function () { window.pendingPredictions--; });
          }
          function show(answer) {
            document.getElementById("error").textContent = "";
            document.getElementById("digit").textContent = String(answer.digit);
            document.getElementById("confidence").textContent = (100 * answer.confidence).toFixed(1) + "%";
            document.getElementById("doubt").textContent = answer.not_a_digit ? "Not a digit? " + answer.not_a_digit : "";
            document.getElementById("input").src = answer.input_png;
            answer.probabilities.forEach(function (p, d) {
              rows[d].querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
              rows[d].querySelector(".value").textContent = (100 * p).toFixed(1) + "%";
              rows[d].classList.toggle("best", d === answer.digit);
            });
          }
          clear();
        })();
        """

    static let style = """
        :root { --ink: #1d2433; --muted: #6b7385; --line: #dfe3ea; --accent: #2f6fde; --bad: #c0392b; --card: #fff; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.4 system-ui, sans-serif; color: var(--ink); background: #f4f6f9; }
        header { display: flex; gap: 1em; align-items: baseline; padding: 0.8em 1.5em; background: var(--card);
          border-bottom: 1px solid var(--line); }
        h1 { font-size: 1.3em; margin: 0; }
        h2 { font-size: 1.05em; margin: 0 0 0.6em; }
        main { padding: 1.5em; display: grid; gap: 1.5em; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
        .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1em 1.2em; }
        .muted { color: var(--muted); }
        .error { color: var(--bad); min-height: 1.4em; }
        .draw { display: flex; gap: 1.5em; flex-wrap: wrap; }
        #pad { width: 280px; height: 280px; border-radius: 6px; touch-action: none; cursor: crosshair; background: #000; }
        .buttons { display: flex; gap: 0.6em; margin-top: 0.5em; align-items: center; }
        button, .file { font: inherit; padding: 0.3em 0.9em; border: 1px solid var(--line); border-radius: 5px;
          background: #fff; cursor: pointer; }
        .file input { display: none; }
        .answer { min-width: 220px; }
        .digit { font-size: 3em; font-weight: 700; }
        .bars { display: grid; gap: 2px; margin: 0.5em 0; }
        .bar { display: grid; grid-template-columns: 1.2em 1fr 3.5em; gap: 0.4em; align-items: center; font-size: 0.85em; }
        .track { height: 0.7em; background: #eef1f5; border-radius: 3px; overflow: hidden; }
        .fill { display: block; height: 100%; width: 0; background: #9db5e0; }
        .bar.best .fill { background: var(--accent); }
        .value { text-align: right; color: var(--muted); }
        #input { image-rendering: pixelated; background: #000; border-radius: 4px; }
        figure { margin: 0.5em 0 0; }
        """
}
