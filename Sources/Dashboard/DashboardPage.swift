// The live training page: curves, progress, the run's settings, the workers, the log, the last
// evaluation's confusion matrix and mistakes, and the draw box. Its script listens to /events and
// redraws; the charts are SVG drawn by the script itself.
import Foundation
import Hummingbird

extension Pages {
    /// GET / (the dashboard), /dashboard.js, /draw.js and /style.css.
    static func addDashboardPage(to router: Router<some RequestContext>) {
        router.get("/") { _, _ in response(dashboardPage, type: "text/html; charset=utf-8") }
        router.get("dashboard.js") { _, _ in response(dashboardScript, type: "text/javascript; charset=utf-8") }
        router.get("draw.js") { _, _ in response(drawScript, type: "text/javascript; charset=utf-8") }
        router.get("style.css") { _, _ in response(style + dashboardStyle, type: "text/css; charset=utf-8") }
    }

    static let dashboardPage = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>mnist training</title>
        <link rel="stylesheet" href="style.css">
        </head>
        <body>
        <header>
          <h1>mnist training</h1>
          <span id="status" class="pill">connecting</span>
          <span id="summary" class="muted"></span>
          <span class="grow"></span>
          <span id="eta" class="muted"></span>
        </header>
        <div class="progress"><div id="progress-bar"></div></div>
        <main>
          <section class="card"><h2>Training loss</h2><svg id="chart-loss" class="chart" viewBox="0 0 480 220"></svg></section>
          <section class="card"><h2>Test accuracy (per epoch)</h2><svg id="chart-accuracy" class="chart" viewBox="0 0 480 220"></svg></section>
          <section class="card"><h2>Images per second</h2><svg id="chart-speed" class="chart" viewBox="0 0 480 220"></svg></section>
          <section class="card"><h2>Learning rate</h2><svg id="chart-rate" class="chart" viewBox="0 0 480 220"></svg></section>
          <section class="card wide"><h2>Workers</h2>
            <table id="workers"><thead><tr><th>name</th><th>address</th><th>id</th><th>state</th><th>slot</th><th>threads</th>
              <th>blocks</th><th>share</th><th title="per step: from receiving the step to sending its gradient, on the worker's clock">compute ms</th>
              <th title="per step: sending the step and the gradient (the answer time less the compute)">transfer ms</th>
              <th title="per step: from its gradient to the last worker's">wait ms</th><th>joined at step</th><th>last seen</th><th>note</th></tr></thead>
              <tbody></tbody></table>
          </section>
          <section class="card"><h2>Run</h2><table id="run" class="keys"><tbody></tbody></table></section>
          <section class="card"><h2>Log</h2><div id="log" class="log"></div></section>
          <section class="card"><h2 id="confusion-title">Confusion matrix</h2><table id="confusion" class="confusion"></table></section>
          <section class="card"><h2 id="mistakes-title">Mistakes</h2><div id="mistakes" class="gallery"></div></section>
        \(drawBox)
        </main>
        <script src="dashboard.js"></script>
        <script src="draw.js"></script>
        </body>
        </html>
        """

    static let dashboardScript = """
        "use strict";
        // Redraws the page from each state the server sends on /events.
        (function () {
          function el(id) { return document.getElementById(id); }
          function text(value) { return value === null || value === undefined ? "–" : String(value); }
          function clock(seconds) {
            if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
            const s = Math.round(seconds);
            return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
          }
          const SVG = "http://www.w3.org/2000/svg";
          function node(name, attributes, parent) {
            const made = document.createElementNS(SVG, name);
            for (const key in attributes) made.setAttribute(key, attributes[key]);
            if (parent) parent.appendChild(made);
            return made;
          }
          function format(value) {
            const magnitude = Math.abs(value);
            if (magnitude === 0) return "0";
            if (magnitude >= 1000) return Math.round(value).toLocaleString();
            if (magnitude >= 1) return value.toFixed(2);
            return value.toPrecision(2);
          }
          // A line chart of [x, y] points with its axes' ranges written at the corners.
          function chart(svg, points, options) {
            svg.setAttribute("data-points", String(points.length));
            while (svg.firstChild) svg.removeChild(svg.firstChild);
            const width = 480, height = 220, left = 56, right = 12, top = 12, bottom = 28;
            node("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, class: "plot" }, svg);
            if (points.length === 0) {
              node("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, svg).textContent = "no data yet";
              return;
            }
            let xs = points.map(function (p) { return p[0]; }), ys = points.map(function (p) { return p[1]; });
            let x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
            let y0 = options.yMin !== undefined ? Math.min(options.yMin, Math.min.apply(null, ys)) : Math.min.apply(null, ys);
            let y1 = Math.max.apply(null, ys);
            if (x1 === x0) { x0 -= 1; x1 += 1; }
            if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 + 1e-9; y1 += Math.abs(y1) * 0.1 + 1e-9; }
            if (options.percent) { y1 = Math.min(y1, 1); y0 = Math.min(y0, y1 - 0.001); }
            function px(x) { return left + (x - x0) / (x1 - x0) * (width - left - right); }
            function py(y) { return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom); }
            for (let i = 0; i <= 4; i++) {
              const y = y0 + (y1 - y0) * i / 4;
              node("line", { x1: left, x2: width - right, y1: py(y), y2: py(y), class: "grid" }, svg);
              node("text", { x: left - 6, y: py(y) + 4, "text-anchor": "end", class: "tick" }, svg).textContent =
                options.percent ? (100 * y).toFixed(2) + "%" : format(y);
            }
            node("text", { x: left, y: height - 8, class: "tick" }, svg).textContent = options.xLabel + " " + Math.round(x0);
            node("text", { x: width - right, y: height - 8, "text-anchor": "end", class: "tick" }, svg).textContent = String(Math.round(x1));
            node("polyline", { points: points.map(function (p) { return px(p[0]) + "," + py(p[1]); }).join(" "), class: "line" }, svg);
            if (points.length < 40) {
              points.forEach(function (p) { node("circle", { cx: px(p[0]), cy: py(p[1]), r: 3, class: "dot" }, svg); });
            }
          }
          function row(cells, tag) {
            const tr = document.createElement("tr");
            cells.forEach(function (cell) {
              const td = document.createElement(tag || "td");
              td.textContent = text(cell);
              tr.appendChild(td);
            });
            return tr;
          }
          let shownMistakes = "";
          function render(state) {
            el("status").textContent = state.status;
            el("status").className = "pill " + state.status;
            const run = state.run, progress = state.progress;
            el("summary").textContent = run.model ? run.model + ", " + run.parameters.toLocaleString() + " parameters, " +
              (run.mode === "single" ? "one process" : "coordinator") : "";
            const fraction = run.totalSteps ? progress.step / run.totalSteps : 0;
            el("progress-bar").style.width = (100 * fraction).toFixed(1) + "%";
            el("eta").textContent = run.totalSteps ? "step " + progress.step + " of " + run.totalSteps + ", epoch " +
              progress.epoch + " of " + run.epochs + " · ETA " + clock(progress.etaSeconds) : "";
            chart(el("chart-loss"), state.curves.loss, { xLabel: "step" });
            chart(el("chart-accuracy"), state.curves.testAccuracy, { xLabel: "epoch", percent: true });
            chart(el("chart-speed"), state.curves.imagesPerSecond, { xLabel: "step", yMin: 0 });
            chart(el("chart-rate"), state.curves.learningRate, { xLabel: "step", yMin: 0 });

            const workers = el("workers").tBodies[0];
            workers.replaceChildren.apply(workers, state.workers.length ? state.workers.map(function (w) {
              function ms(value) { return value === null || value === undefined ? "–" : value.toFixed(1); }
              const tr = row([w.name, w.address, w.peer, w.state, w.slot, w.threads, w.blocks, (100 * w.share).toFixed(0) + "%",
                ms(w.computeMilliseconds), ms(w.transferMilliseconds), ms(w.waitMilliseconds), w.joinedStep, clock(w.lastSeen),
                w.note]);
              tr.className = w.state;
              return tr;
            }) : [row([run.mode === "single" ? "this process" : "no worker yet", "", "", state.status, "", run.configuration.threads || "",
              "all", "100%", "", "", "", "", "", ""])]);

            const info = [["images", run.trainImages ? run.trainImages.toLocaleString() + " training, " + run.testImages.toLocaleString() + " test" : ""],
              ["steps", run.stepsPerEpoch ? run.stepsPerEpoch + " per epoch, " + run.totalSteps + " in all" : ""],
              ["loss", progress.loss === null || progress.loss === undefined ? "" : progress.loss.toFixed(4)],
              ["test accuracy", progress.testAccuracy ? (100 * progress.testAccuracy).toFixed(2) + "%" : ""],
              ["training time", clock(progress.trainingSeconds)],
              ["last checkpoint", progress.lastCheckpointStep ? "after step " + progress.lastCheckpointStep : "none yet"]];
            if (run.bytesPerStep) info.push(["bytes per step", run.bytesPerStep.toLocaleString()]);
            Object.keys(run.configuration).sort().forEach(function (key) { info.push([key, run.configuration[key]]); });
            const runBody = el("run").tBodies[0];
            runBody.replaceChildren.apply(runBody, info.map(function (pair) { return row(pair); }));

            const log = el("log");
            log.replaceChildren.apply(log, state.log.slice(-80).reverse().map(function (entry) {
              const line = document.createElement("div");
              line.className = entry.level;
              line.textContent = clock(entry.time) + "  " + entry.text;
              return line;
            }));

            const evaluation = state.evaluation;
            if (evaluation) {
              el("confusion-title").textContent = "Confusion matrix after epoch " + evaluation.epoch + " (" +
                (100 * evaluation.accuracy).toFixed(2) + "%)";
              const table = el("confusion");
              const rows = [row([""].concat(evaluation.confusion.map(function (_, k) { return "→" + k; })), "th")];
              evaluation.confusion.forEach(function (counts, label) {
                const tr = row([label].concat(counts));
                tr.firstChild.className = "label";
                counts.forEach(function (count, predicted) {
                  const td = tr.children[predicted + 1];
                  if (predicted === label) td.className = "hit";
                  else if (count > 0) td.className = count > 5 ? "miss many" : "miss";
                });
                rows.push(tr);
              });
              table.replaceChildren.apply(table, rows);
              const key = evaluation.epoch + ":" + evaluation.mistakes.length;
              if (key !== shownMistakes) {
                shownMistakes = key;
                el("mistakes-title").textContent = "Mistakes after epoch " + evaluation.epoch + " (first " +
                  evaluation.mistakes.length + ")";
                const gallery = el("mistakes");
                gallery.replaceChildren.apply(gallery, evaluation.mistakes.map(function (m) {
                  const figure = document.createElement("figure");
                  const image = document.createElement("img");
                  image.src = window.reportImages ? window.reportImages[m.index] : "mistake/" + m.index + ".png";
                  image.width = 56; image.height = 56;
                  image.alt = "test image " + m.index;
                  const caption = document.createElement("figcaption");
                  caption.textContent = m.label + " → " + m.predicted;
                  caption.title = "test image " + m.index + ": " + m.label + ", read as " + m.predicted + " (" +
                    (100 * m.confidence).toFixed(0) + "%)";
                  figure.appendChild(image);
                  figure.appendChild(caption);
                  return figure;
                }));
              }
            }
          }
          window.dashboardStates = 0;
          // A saved report (--report) carries its final state and the mistakes' images; no server.
          if (window.reportState) {
            render(window.reportState);
            return;
          }
          const events = new EventSource("events");
          events.onmessage = function (message) {
            window.dashboardStates++;
            render(JSON.parse(message.data));
          };
          events.onerror = function () {
            el("status").textContent = "disconnected";
            el("status").className = "pill stopped";
          };
        })();
        """

    /// A finished run's page as one self-contained HTML file (`--report`): its final state, the
    /// mistakes' images as data URLs, and the page's own style and script inline; no draw box, no server.
    static func report(state: DashboardState, images: [String: String]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Inside <script>, "</" would end the element early: JSON allows "<\/" for it.
        func script(_ value: some Encodable) throws -> String {
            String(decoding: try encoder.encode(value), as: UTF8.self).replacingOccurrences(of: "</", with: "<\\/")
        }
        let page =
            dashboardPage
            .replacingOccurrences(
                of: "<link rel=\"stylesheet\" href=\"style.css\">", with: "<style>\(style + dashboardStyle)</style>"
            )
            .replacingOccurrences(of: "<title>mnist training</title>", with: "<title>mnist training report</title>")
            .replacingOccurrences(of: "<h1>mnist training</h1>", with: "<h1>mnist training report</h1>")
            .replacingOccurrences(of: drawBox, with: "")
            .replacingOccurrences(of: "<script src=\"draw.js\"></script>\n", with: "")
            .replacingOccurrences(
                of: "<script src=\"dashboard.js\"></script>",
                with:
                    "<script>window.reportState = \(try script(state));\nwindow.reportImages = \(try script(images));\n</script>\n"
                    + "<script>\(dashboardScript)</script>")
        return page
    }

    static let dashboardStyle = """

        header .grow { flex: 1; }
        .pill { padding: 0.1em 0.7em; border-radius: 1em; background: #e4e8ef; font-size: 0.85em; }
        .pill.training { background: #dcebff; color: #1d4fa8; }
        .pill.finished { background: #dff3e3; color: #1e7b34; }
        .pill.stopped { background: #fbe3e1; color: #a4281d; }
        .progress { height: 4px; background: #e4e8ef; }
        #progress-bar { height: 100%; width: 0; background: var(--accent); transition: width 0.3s; }
        .card.wide { grid-column: 1 / -1; }
        .chart { width: 100%; height: auto; }
        .chart .plot { fill: #fbfcfe; stroke: var(--line); }
        .chart .grid { stroke: #eceff4; }
        .chart .tick, .chart .empty { font-size: 11px; fill: var(--muted); }
        .chart .line { fill: none; stroke: var(--accent); stroke-width: 1.6; }
        .chart .dot { fill: var(--accent); }
        table { border-collapse: collapse; width: 100%; font-size: 0.88em; }
        th, td { text-align: left; padding: 0.25em 0.5em; border-bottom: 1px solid #eef0f4; }
        tr.lost td, tr.evicted td { color: var(--bad); }
        tr.spare td { color: var(--muted); }
        table.keys td:first-child { color: var(--muted); width: 40%; }
        .log { font: 12px/1.45 ui-monospace, monospace; max-height: 260px; overflow-y: auto; white-space: pre-wrap; }
        .log .warning { color: var(--bad); }
        table.confusion { width: auto; }
        table.confusion td, table.confusion th { text-align: right; padding: 0.15em 0.45em; font-variant-numeric: tabular-nums; }
        table.confusion td.hit { background: #e3f1e6; }
        table.confusion td.miss { background: #fdeceb; }
        table.confusion td.miss.many { background: #f8c9c4; }
        .gallery { display: flex; flex-wrap: wrap; gap: 6px; max-height: 330px; overflow-y: auto; }
        .gallery figure { margin: 0; text-align: center; font-size: 0.75em; color: var(--muted); }
        .gallery img { image-rendering: pixelated; display: block; border-radius: 3px; }
        """
}
