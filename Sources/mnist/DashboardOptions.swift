// `--dashboard [HOST:]PORT` on `mnist train` and `mnist coordinator`: a live page of the run, served
// beside training (Dashboard module) from the first step until the process exits.
import ArgumentParser
import Dashboard
import Foundation
import Logging
import MNIST
import Training

struct DashboardOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Serve a live dashboard of the run at [HOST:]PORT (port 0: any free one; the URL is logged).",
            valueName: "address"))
    var dashboard: String?

    @Flag(help: "Allow --dashboard on an address other machines can reach (anyone who reaches it sees the run).")
    var dashboardPublic = false

    @Option(
        help: ArgumentHelp(
            "When the run ends, write its dashboard page (curves, confusion matrix, mistakes) to this "
                + "self-contained HTML file.", valueName: "path"))
    var report: String?

    @Option(
        help: ArgumentHelp(
            "With workers: when the run ends, write the step timeline of the coordinator and every worker, clocks "
                + "aligned, to this file (Chrome trace JSON: open it in Perfetto or chrome://tracing).",
            valueName: "path"))
    var trace: String?

    func validate() throws {
        if let dashboard {
            _ = try HTTPBinding.address(
                dashboard, flag: "--dashboard", public: dashboardPublic, publicFlag: "--dashboard-public")
        }
        for (flag, path) in [("--report", report), ("--trace", trace)] {
            guard let path else { continue }
            let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue,
                FileManager.default.isWritableFile(atPath: folder)
            else {
                throw ValidationError("\(flag) \(path): the folder \(folder) does not exist or cannot be written")
            }
        }
    }

    /// The timeline recorder for --trace (nil without).
    func traceRecorder() -> TraceRecorder? { trace.map { _ in TraceRecorder() } }

    /// Writes the timeline, whole or not at all, and says where (or why not).
    func writeTrace(_ recorder: TraceRecorder?, logger: Logger) {
        guard let recorder, let trace else { return }
        do {
            try recorder.write(to: URL(fileURLWithPath: trace))
            logger.info("step timeline written to \(trace) (open it in Perfetto or chrome://tracing)")
        } catch {
            logger.error("could not write the step timeline \(trace): \(error)")
        }
    }

    /// Starts the dashboard when asked (its URL is logged), or only the monitor for --report; nil for neither.
    func start(mode: String, configuration: TrainingConfiguration, data: MNISTData, logger: Logger) throws
        -> LiveDashboard?
    {
        guard dashboard != nil || report != nil else { return nil }
        let monitor = TrainingMonitor(mode: mode, configuration: configuration, testImages: data.test)
        let routes = DashboardServer(monitor: monitor)
        var server: HTTPServer?
        if let dashboard {
            let address = try HTTPBinding.address(
                dashboard, flag: "--dashboard", public: dashboardPublic, publicFlag: "--dashboard-public")
            var serverLogger = logger
            serverLogger.logLevel = max(logger.logLevel, .warning)
            server = try HTTPServer.start(router: routes.router(), address: address, logger: serverLogger)
            logger.info("dashboard at \(server?.address.url ?? "")")
        }
        return LiveDashboard(
            monitor: monitor, routes: routes, server: server, report: report.map { URL(fileURLWithPath: $0) },
            logger: logger)
    }
}

/// A running dashboard: the monitor that training feeds, its server, and where its report goes.
final class LiveDashboard {
    let monitor: TrainingMonitor
    let routes: DashboardServer
    let server: HTTPServer?
    let report: URL?
    let logger: Logger

    init(monitor: TrainingMonitor, routes: DashboardServer, server: HTTPServer?, report: URL?, logger: Logger) {
        self.monitor = monitor
        self.routes = routes
        self.server = server
        self.report = report
        self.logger = logger
    }

    /// Says how the run ended, writes the report, closes the event streams and stops the server.
    func stop(status: String, _ text: String) {
        monitor.finish(status, text)
        if let report {
            // Written whole or not at all (a temporary file renamed over the target).
            do {
                try Data(try monitor.report().utf8).write(to: report, options: .atomic)
                logger.info("report written to \(report.path)")
            } catch {
                logger.error("could not write the report \(report.path): \(error)")
            }
        }
        routes.close()
        server?.stop()
    }
}
