// `mnist serve`'s HTTP side: the draw-a-digit page, POST /predict, GET /health and GET /metrics.
// Uploads are bounded (size, and how many are read at once); every refusal is a 4xx or 503 with a JSON
// body {"error": {"message": ...}} that says what was wrong.
import Foundation
import Hummingbird
import MNIST
import Synchronization

/// The routes of a prediction server, over a `DigitReader`.
public final class PredictionServer: Sendable {
    /// The largest upload read, in bytes; larger ones get 413.
    public static let maximumUploadBytes = 8 << 20
    /// Uploads read at the same time; more get 503 with Retry-After.
    public let maximumConcurrentPredictions: Int
    /// How long an upload may take to arrive; a slower one gets 408 and frees its place.
    public let uploadTimeout: Duration

    public let reader: DigitReader
    public let metrics: ServeMetrics
    /// What GET /health reports about the models.
    let modelNames: [String]
    let parameterCount: Int
    private let inFlight = Atomic<Int>(0)

    public init(
        reader: DigitReader, modelNames: [String], parameterCount: Int, maximumConcurrentPredictions: Int = 4,
        uploadTimeout: Duration = .seconds(10)
    ) {
        self.reader = reader
        self.maximumConcurrentPredictions = maximumConcurrentPredictions
        self.uploadTimeout = uploadTimeout
        self.modelNames = modelNames
        self.parameterCount = parameterCount
        metrics = ServeMetrics(models: modelNames.count, parameters: parameterCount)
    }

    /// GET / (the page), /draw.js, /style.css, /health, /metrics; POST /predict.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        Pages.addDrawPage(to: router, title: "mnist serve")
        router.get("health") { _, _ in
            try JSONResponse.make(
                HealthBody(status: "ok", models: self.modelNames, parameters: self.parameterCount, classes: 10))
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.render())))
        }
        addPredictRoutes(to: router)
        return router
    }

    /// POST /predict (and a 405 that says so for GET).
    public func addPredictRoutes(to router: Router<BasicRequestContext>) {
        router.post("predict") { request, _ in try await self.predict(request) }
        router.get("predict") { _, _ -> Response in
            throw HTTPError(
                .methodNotAllowed, headers: [.allow: "POST"],
                message: "POST an image file (PNG, JPEG, PGM or PPM) as the body of /predict")
        }
    }

    /// The whole request body, at most `maximumUploadBytes` of it, arriving within `uploadTimeout`.
    func collect(_ body: RequestBody) async throws -> ByteBuffer {
        let timeout = uploadTimeout
        return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask { try await body.collect(upTo: Self.maximumUploadBytes) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let buffer = first else {
                metrics.recordTimeout()
                throw HTTPError(
                    .requestTimeout,
                    message:
                        "the upload did not arrive within \(timeout.components.seconds) s; send the whole image at once"
                )
            }
            return buffer
        }
    }

    /// Reads the upload (the request body is the image file's bytes) and answers with the digit.
    func predict(_ request: Request) async throws -> Response {
        let limit = maximumConcurrentPredictions
        guard inFlight.wrappingAdd(1, ordering: .relaxed).newValue <= limit else {
            inFlight.wrappingSubtract(1, ordering: .relaxed)
            metrics.recordBusy()
            throw HTTPError(
                .serviceUnavailable, headers: [.retryAfter: "1"],
                message: "busy: \(limit) images are being read; try again in a second")
        }
        metrics.inFlight.increment()
        defer {
            inFlight.wrappingSubtract(1, ordering: .relaxed)
            metrics.inFlight.decrement()
        }
        let body: ByteBuffer
        do {
            body = try await collect(request.body)
        } catch let error as HTTPResponseError where error.status == .contentTooLarge {
            metrics.recordTooLarge()
            throw HTTPError(
                .contentTooLarge,
                message: "the upload is larger than \(Self.maximumUploadBytes >> 20) MiB; send one image file "
                    + "(PNG, JPEG, PGM or PPM) as the request body")
        }
        let bytes = Array(body.readableBytesView)
        let started = ContinuousClock.now
        let reader = self.reader
        // Decoding a large image takes long enough that it must not run on an event loop.
        let result: Result<DigitAnswer, DigitReaderError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                do throws(DigitReaderError) {
                    continuation.resume(returning: .success(try reader.read(bytes)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        metrics.duration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
        switch result {
        case .success(let answer):
            metrics.recordAnswer(digit: answer.digit)
            return try JSONResponse.make(PredictionBody(answer))
        case .failure(.noModel):
            metrics.recordBusy()
            throw HTTPError(
                .serviceUnavailable, headers: [.retryAfter: "5"], message: DigitReaderError.noModel.description)
        case .failure(.unreadableImage(let reason)):
            metrics.recordUnreadable()
            throw HTTPError(
                .unprocessableContent,
                message: "not an image this server reads (PNG, JPEG, PGM or PPM, sent as the request body): \(reason)")
        case .failure(.noDigit(let reason)):
            metrics.recordNoDigit()
            throw HTTPError(.unprocessableContent, message: "no digit found: \(reason)")
        }
    }
}

extension Duration {
    /// The whole duration in nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds.multipliedReportingOverflow(by: 1_000_000_000).overflow
            ? .max : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// GET /health.
struct HealthBody: Encodable {
    let status: String
    let models: [String]
    let parameters: Int
    let classes: Int
}

/// POST /predict's answer.
struct PredictionBody: Encodable {
    let digit: Int
    let confidence: Float
    let probabilities: [Float]
    /// The 28x28 input the network saw, bytes 0 (background) ... 255 (ink), row by row.
    let input: [UInt8]
    /// The same input as a PNG data URL (white ink on black, as MNIST).
    let inputPNG: String
    let preprocessing: Preprocessing
    /// Why the image does not look like one digit; absent when it does.
    let notADigit: String?

    struct Preprocessing: Encodable {
        let sourceWidth: Int
        let sourceHeight: Int
        let inverted: Bool
        let regions: Int
        let specks: Int
        let cropBox: [Int]
    }

    enum CodingKeys: String, CodingKey {
        case digit, confidence, probabilities, input, preprocessing
        case inputPNG = "input_png"
        case notADigit = "not_a_digit"
    }

    init(_ answer: DigitAnswer) {
        digit = answer.digit
        confidence = answer.confidence
        probabilities = answer.probabilities
        input = answer.input.bytes
        let side = answer.input.side
        let png = (try? PNG.encode(RasterImage(width: side, height: side, layout: .grey, samples: input))) ?? []
        inputPNG = "data:image/png;base64," + Data(png).base64EncodedString()
        notADigit = answer.notADigit
        let report = answer.input.report
        preprocessing = Preprocessing(
            sourceWidth: report.sourceWidth, sourceHeight: report.sourceHeight, inverted: report.wasInverted,
            regions: report.keptRegionCount, specks: report.speckCount,
            cropBox: [report.cropBox.x, report.cropBox.y, report.cropBox.width, report.cropBox.height])
    }
}

/// JSON responses with snake_case keys where the types name them.
enum JSONResponse {
    static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
