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

    func validate() throws {
        if let dashboard { _ = try HTTPBinding.address(dashboard, flag: "--dashboard", public: dashboardPublic) }
    }

    /// Starts the dashboard when asked (nil otherwise); logs its URL.
    func start(mode: String, configuration: TrainingConfiguration, data: MNISTData, logger: Logger) throws
        -> LiveDashboard?
    {
        guard let dashboard else { return nil }
        let address = try HTTPBinding.address(dashboard, flag: "--dashboard", public: dashboardPublic)
        let monitor = TrainingMonitor(mode: mode, configuration: configuration, testImages: data.test)
        let routes = DashboardServer(monitor: monitor)
        var serverLogger = logger
        serverLogger.logLevel = max(logger.logLevel, .warning)
        let server = try HTTPServer.start(router: routes.router(), address: address, logger: serverLogger)
        logger.info("dashboard at \(server.address.url)")
        return LiveDashboard(monitor: monitor, routes: routes, server: server)
    }
}

/// A running dashboard: the monitor that training feeds, and its server.
final class LiveDashboard {
    let monitor: TrainingMonitor
    let routes: DashboardServer
    let server: HTTPServer

    init(monitor: TrainingMonitor, routes: DashboardServer, server: HTTPServer) {
        self.monitor = monitor
        self.routes = routes
        self.server = server
    }

    /// Says how the run ended, closes the event streams and stops the server.
    func stop(status: String, _ text: String) {
        monitor.finish(status, text)
        routes.close()
        server.stop()
    }
}
