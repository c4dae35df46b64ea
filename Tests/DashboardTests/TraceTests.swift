// `--trace FILE`: the step timeline of a coordinator and its workers as Chrome trace JSON. A real run
// with two worker processes (whose clocks start at their own launch, seconds away from the
// coordinator's) must give every span kind for every worker, causally ordered once aligned; and the
// NTP alignment recovers a known offset from synthetic exchanges.
import DataParallel
import Foundation
import Host
import TestSupport
import Training
import XCTest

final class TraceTests: XCTestCase {
    func testTheLeastDelayedExchangeGivesEachWorkersOffset() {
        // A worker whose clock is 1000 s ahead; transfers of 1 ms and 3 ms each way, then one of
        // 0.2 ms out and 0.6 ms back (the least round trip).
        let offset = 1000.0
        func exchange(sent: Double, out: Double, compute: Double, back: Double) -> StepTiming {
            var timing = StepTiming(broadcastStarted: sent)
            var worker = StepTiming.Exchange()
            worker.stepSent = sent
            let received = sent + out + offset, answered = received + compute
            worker.reported = WorkerTiming(received: UInt64(received * 1e9), sent: UInt64(answered * 1e9))
            worker.arrived = answered - offset + back
            timing.workers[PeerID("w")] = worker
            return timing
        }
        let timings = [
            exchange(sent: 10, out: 0.001, compute: 0.02, back: 0.001),
            exchange(sent: 11, out: 0.003, compute: 0.02, back: 0.003),
            exchange(sent: 12, out: 0.0002, compute: 0.02, back: 0.0006),
        ]
        let recorder = TraceRecorder()
        for (step, timing) in timings.enumerated() {
            recorder.record(
                .stepCompleted(
                    StepMetrics(
                        step: step, epoch: 0, sampleCount: 1, lossSum: 0, correctCount: 0, learningRate: 0,
                        gatherSeconds: 0, applySeconds: 0, timing: timing)))
        }
        let found = try? XCTUnwrap(recorder.offsets()[PeerID("w")])
        XCTAssertEqual(found?.delay ?? 0, 0.0008, accuracy: 1e-6, "the third exchange's round trip")
        // With 0.2 ms out and 0.6 ms back, NTP's estimate is off by half the difference: 0.2 ms.
        XCTAssertEqual(found?.offset ?? 0, offset - 0.0002, accuracy: 1e-6)
    }

    func testATwoWorkerRunGivesEverySpanForEveryWorkerInCausalOrder() throws {
        let data = try TinyDataset.folder("trace", seed: 5)
        let trace = data.file("steps.json")
        let result = try Subprocess.capture(
            [
                Products.mnist.path, "train", "--data", data.url.path, "--workers", "2", "--epochs", "2",
                "--batch-size", "64", "--output", data.file("model.safetensors").path, "--trace", trace.path,
            ], timeout: 300)
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertTrue(result.standardError.contains("step timeline written to \(trace.path)"), result.standardError)

        let object = try XCTUnwrap(
            JSONSerialization.jsonObject(with: try Data(contentsOf: trace)) as? [String: Any])
        XCTAssertEqual(object["displayTimeUnit"] as? String, "ms")
        let events = try XCTUnwrap(object["traceEvents"] as? [[String: Any]])
        struct Span {
            let name: String, pid: Int, step: Int?, start: Double, end: Double
        }
        var spans: [Span] = []
        var processes: [Int: String] = [:]
        for event in events {
            let phase = try XCTUnwrap(event["ph"] as? String)
            let pid = try XCTUnwrap(event["pid"] as? Int)
            let name = try XCTUnwrap(event["name"] as? String)
            if phase == "M" {
                if name == "process_name" { processes[pid] = (event["args"] as? [String: Any])?["name"] as? String }
                continue
            }
            XCTAssertEqual(phase, "X", "\(event)")
            XCTAssertNotNil(event["tid"] as? Int, "\(event)")
            let start = try XCTUnwrap(event["ts"] as? Double), duration = try XCTUnwrap(event["dur"] as? Double)
            XCTAssertGreaterThanOrEqual(duration, 0, "\(event)")
            let args = event["args"] as? [String: Any]
            spans.append(Span(name: name, pid: pid, step: args?["step"] as? Int, start: start, end: start + duration))
        }
        let steps = 2 * 10  // 640 images in batches of 64, two epochs
        XCTAssertEqual(processes[1], "coordinator")
        let workers = processes.keys.filter { $0 != 1 }.sorted()
        XCTAssertEqual(workers.count, 2, "\(processes)")
        for kind in ["send weights", "wait", "average", "apply"] {
            XCTAssertEqual(spans.filter { $0.pid == 1 && $0.name == kind }.count, steps, "coordinator \(kind)")
        }
        XCTAssertEqual(spans.filter { $0.name == "evaluate" }.count, 2)
        XCTAssertEqual(spans.filter { $0.name == "checkpoint" }.count, 1, "after the first epoch")
        let sent = Dictionary(
            spans.filter { $0.pid == 1 && $0.name == "send weights" }.map { ($0.step ?? -1, $0) },
            uniquingKeysWith: { first, _ in first })
        let averaged = Dictionary(
            spans.filter { $0.pid == 1 && $0.name == "average" }.map { ($0.step ?? -1, $0) },
            uniquingKeysWith: { first, _ in first })
        for pid in workers {
            // Aligned: the worker's clock started with its process, seconds away from the coordinator's.
            XCTAssertTrue(processes[pid]?.contains("clock offset") ?? false, "\(processes)")
            for kind in ["send weights", "compute", "send gradient", "wait"] {
                XCTAssertEqual(spans.filter { $0.pid == pid && $0.name == kind }.count, steps, "worker \(pid) \(kind)")
            }
            for compute in spans where compute.pid == pid && compute.name == "compute" {
                let step = try XCTUnwrap(compute.step)
                let broadcast = try XCTUnwrap(sent[step]), average = try XCTUnwrap(averaged[step])
                XCTAssertGreaterThanOrEqual(
                    compute.start, broadcast.start, "step \(step): computed before the coordinator sent it")
                XCTAssertLessThanOrEqual(compute.end, average.start, "step \(step): computed after it was averaged")
            }
        }
    }

    func testTraceNeedsWorkers() throws {
        let result = try Subprocess.capture([Products.mnist.path, "train", "--trace", "/tmp/x.json"], timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.standardError.contains("--trace: needs --workers"), result.standardError)
    }
}
