// `mnist serve`: a finished model behind HTTP: the draw-a-digit page, POST /predict, /health, /metrics.
// The routes live in Dashboard (PredictionServer); this file loads the models, checks the address
// and runs the server until SIGINT or SIGTERM.
import ArgumentParser
import Dashboard
import Foundation
import Training

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a model over HTTP: a page to draw digits on and a JSON API (POST /predict).",
        discussion: """
            Routes: GET / (draw a digit), POST /predict (the body is an image file: PNG, JPEG, PGM or PPM; the \
            answer is JSON with the digit, the ten probabilities and the 28x28 input the network saw), \
            GET /health, GET /metrics (Prometheus). Uploads are limited to 8 MiB, 10 s to arrive and 4 at \
            a time; refusals are JSON {"error": {"message": ...}} with status 408, 413, 422 or 503.
            Example: curl --data-binary @digit.png http://127.0.0.1:8080/predict
            """)

    @Option(
        name: .customLong("model"),
        help: ArgumentHelp(
            "The model file (safetensors); repeat it to serve an ensemble (default: model.safetensors).",
            valueName: "path"))
    var models: [String] = []

    @Option(
        help: ArgumentHelp(
            "Address to listen on: HOST:PORT, [IPv6]:PORT or PORT (on 127.0.0.1); port 0 picks a free one.",
            valueName: "address"))
    var bind = "127.0.0.1:8080"

    @Flag(help: "Allow --bind on an address other machines can reach (anyone who reaches it can use the model).")
    var `public` = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        _ = try HTTPBinding.address(bind, flag: "--bind", public: `public`)
    }

    func run() throws {
        let logger = logging.makeLogger(label: "mnist.serve")
        let address = try HTTPBinding.address(bind, flag: "--bind", public: `public`)
        let paths = models.isEmpty ? ["model.safetensors"] : models
        let ensemble = try Ensemble(loading: paths.map { URL(fileURLWithPath: $0) })
        let parameters = ensemble.networks.map(\.parameterCount).reduce(0, +)
        let server = PredictionServer(
            reader: DigitReader(ensemble: ensemble),
            modelNames: paths.map { URL(fileURLWithPath: $0).lastPathComponent }, parameterCount: parameters)
        let running = try HTTPServer.start(
            router: server.router(), address: address, handleSignals: true, logger: logger)
        print("serving \(paths.joined(separator: ", ")) at \(running.address.url) (Ctrl-C stops)")
        fflush(nil)  // Tests and scripts read the URL from a pipe.
        running.wait()
        logger.info("stopped")
    }
}

/// The rule for HTTP addresses, the same as for the coordinator's socket: loopback unless asked.
enum HTTPBinding {
    static func address(_ text: String, flag: String, public: Bool, publicFlag: String = "--public") throws
        -> HTTPAddress
    {
        guard let address = HTTPAddress(parsing: text) else {
            throw ValidationError("\(flag): expected HOST:PORT, [IPv6]:PORT or PORT (0-65535), got '\(text)'")
        }
        guard address.isLoopback || `public` else {
            throw ValidationError(
                "\(flag) \(text) would let anyone who reaches that address use it. Bind to 127.0.0.1 (and reach it "
                    + "through an SSH tunnel), or pass \(publicFlag) on a network you trust.")
        }
        return address
    }
}
