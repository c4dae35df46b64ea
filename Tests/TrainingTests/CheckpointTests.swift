// Checkpoints of `mnist train` in one process, as users meet them: a run stopped by SIGINT or killed
// with SIGKILL and started again with the same command writes the same model file, byte for byte, as
// the run that was never stopped; a checkpoint of another configuration is refused naming the flag;
// `--fresh` starts over; the checkpoint is a model file for `evaluate`. Real processes, small data.
import ConvNet
import Foundation
import Host
import MNIST
import TestSupport
import XCTest

@testable import Training

final class CheckpointTests: XCTestCase {
    /// 640 training and 160 test images; 5 steps per epoch at batch 128.
    private func smallDataset() throws -> TemporaryDirectory { try TinyDataset.folder("checkpoint-data", seed: 31) }

    private func arguments(data: TemporaryDirectory, output: URL, extra: [String] = []) -> [String] {
        [
            "train", "--data", data.url.path, "--epochs", "30", "--batch-size", "128", "--seed", "5",
            "--checkpoint-every", "1", "--output", output.path, "--log-format", "json",
        ] + extra
    }

    private func sha(_ url: URL) throws -> String { try Data(contentsOf: url).sha256Hex }

    /// Starts `mnist` with `arguments`, waits until its checkpoint exists, sends `signal`, and returns
    /// its status.
    private func interrupt(_ arguments: [String], checkpoint: URL, signal: Int32) throws -> Int32 {
        let process = Process()
        process.executableURL = Products.mnist
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: checkpoint.path), Date() < deadline, process.isRunning {
            Thread.sleep(forTimeInterval: 0.01)
        }
        Thread.sleep(forTimeInterval: 0.2)  // A few more steps, so it stops mid-epoch somewhere.
        kill(process.processIdentifier, signal)
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        print("mnist train, stopped by signal \(signal): \(log)")
        return process.terminationStatus
    }

    /// The final write of the model fails (its folder was removed during the run, with the
    /// checkpoint in it): the finished run is kept as a checkpoint in the temporary folder, the error
    /// names it, and `mnist export` writes from it the same model file an undisturbed run writes.
    func testAFailedFinalWriteKeepsTheRunAndExportWritesTheSameModel() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("checkpoint-lost")
        let reference = output.file("reference.safetensors")
        let undisturbed = try Subprocess.capture(
            [Products.mnist.path] + arguments(data: data, output: reference), timeout: 300)
        XCTAssertEqual(undisturbed.status, 0, undisturbed.standardError)

        let folder = output.file("doomed")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let model = folder.appendingPathComponent("model.safetensors")
        let kept = FileManager.default.temporaryDirectory.appendingPathComponent("model.checkpoint.safetensors")
        try? FileManager.default.removeItem(at: kept)
        defer { try? FileManager.default.removeItem(at: kept) }
        let run = try WatchedProcess(Products.mnist, arguments(data: data, output: model))
        defer { run.kill(SIGKILL) }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: Checkpoint.defaultURL(forOutput: model).path), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        try FileManager.default.removeItem(at: folder)
        XCTAssertTrue(run.wait(seconds: 300))
        XCTAssertEqual(run.status, 1, run.output)
        XCTAssertTrue(run.output.contains("The finished run is kept in \(kept.path)"), run.output)
        XCTAssertTrue(run.output.contains("mnist export"), run.output)

        let exported = output.file("exported.safetensors")
        let export = try Subprocess.capture(
            [Products.mnist.path, "export", kept.path, "--output", exported.path, "--data", data.url.path],
            timeout: 120)
        XCTAssertEqual(export.status, 0, export.standardError)
        XCTAssertEqual(try sha(exported), try sha(reference), "the exported model differs from the undisturbed run's")
    }

    func testAnInterruptedRunResumesToTheSameModelFile() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("checkpoint-out")
        let reference = output.file("reference.safetensors")
        let uninterrupted = try Subprocess.capture(
            [Products.mnist.path] + arguments(data: data, output: reference), timeout: 300)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.standardError)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: Checkpoint.defaultURL(forOutput: reference).path),
            "a finished run removes its checkpoint")

        for signal in [SIGINT, SIGKILL] {
            let model = output.file("model-\(signal).safetensors")
            let checkpoint = Checkpoint.defaultURL(forOutput: model)
            let status = try interrupt(
                arguments(data: data, output: model), checkpoint: checkpoint, signal: signal)
            XCTAssertEqual(status, signal == SIGINT ? 130 : SIGKILL, "signal \(signal)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: model.path), "no model from an interrupted run")
            let state = try Checkpoint.read(
                from: checkpoint,
                parameterCount: try Network(architecture: ModelPreset.defaultPreset.architecture, seed: 0)
                    .parameterCount)
            XCTAssertGreaterThan(state.step, 0)
            XCTAssertLessThan(state.step, 150, "signal \(signal): the run was stopped before its end")
            // The checkpoint is a model file too.
            let evaluation = try Subprocess.capture(
                [Products.mnist.path, "evaluate", "--model", checkpoint.path, "--data", data.url.path], timeout: 120)
            XCTAssertEqual(evaluation.status, 0, evaluation.standardError)

            let resumed = try Subprocess.capture(
                [Products.mnist.path] + arguments(data: data, output: model), timeout: 300)
            XCTAssertEqual(resumed.status, 0, resumed.standardError)
            XCTAssertTrue(resumed.standardError.contains("continuing from the checkpoint"), resumed.standardError)
            print("signal \(signal): stopped after step \(state.step) of 150, resumed")
            XCTAssertEqual(try sha(model), try sha(reference), "signal \(signal): resumed run wrote another model")
            XCTAssertFalse(FileManager.default.fileExists(atPath: checkpoint.path))
        }
    }

    func testACheckpointOfAnotherRunIsRefusedAndFreshStartsOver() throws {
        let data = try smallDataset()
        let output = try TemporaryDirectory("checkpoint-other")
        let model = output.file("model.safetensors")
        let checkpoint = Checkpoint.defaultURL(forOutput: model)
        _ = try interrupt(arguments(data: data, output: model), checkpoint: checkpoint, signal: SIGINT)
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint.path))
        let other = try Subprocess.capture(
            [Products.mnist.path] + arguments(data: data, output: model, extra: ["--learning-rate", "0.02"]),
            timeout: 120)
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(
            other.standardError.contains("--learning-rate 0.01 in the checkpoint, 0.02 now"), other.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: model.path))
        let fresh = try Subprocess.capture(
            [Products.mnist.path]
                + arguments(data: data, output: model, extra: ["--learning-rate", "0.02", "--fresh"]),
            timeout: 300)
        XCTAssertEqual(fresh.status, 0, fresh.standardError)
        XCTAssertFalse(fresh.standardError.contains("continuing"), fresh.standardError)
        XCTAssertFalse(FileManager.default.fileExists(atPath: checkpoint.path))
    }

    /// A folder or a device named as the model or the checkpoint is refused before any training.
    func testFoldersAndDevicesAreRefusedAsOutputs() throws {
        let data = try smallDataset()
        let folder = try TemporaryDirectory("checkpoint-folder")
        for (flag, path) in [
            ("--output", folder.url.path), ("--output", "/dev/null"), ("--checkpoint", folder.url.path),
        ] {
            var command = [Products.mnist.path, "train", "--data", data.url.path, "--epochs", "1"]
            command +=
                flag == "--output" ? ["--output", path] : ["--output", folder.file("m.safetensors").path, flag, path]
            let result = try Subprocess.capture(command, timeout: 60)
            XCTAssertNotEqual(result.status, 0, "\(flag) \(path)")
            XCTAssertTrue(result.standardError.contains("\(flag): \(path) is"), result.standardError)
            XCTAssertFalse(result.standardOutput.contains("epoch"), "no training for \(flag) \(path)")
        }
    }

    /// A model file records the SHA-256 of its weights: one flipped byte is refused as damaged, and
    /// non-finite weights are refused as unusable, by `evaluate` and `predict` too (a clear error and a
    /// non-zero exit, never invalid JSON or `{}`).
    func testDamagedAndNonFiniteModelsAreRefused() throws {
        let data = try smallDataset()
        let folder = try TemporaryDirectory("checkpoint-damaged")
        let network = try Network(architecture: ModelPreset.defaultPreset.architecture, seed: 3)
        let good = folder.file("good.safetensors")
        try network.save(to: good, configuration: TrainingConfiguration(), testAccuracy: 0.5)
        XCTAssertNoThrow(try Network.loadChecked(from: good))

        let flipped = folder.file("flipped.safetensors")
        var bytes = try Data(contentsOf: good)
        bytes[bytes.count - 3] ^= 0x01  // A bit of the last weight.
        try bytes.write(to: flipped)
        XCTAssertNoThrow(try Network.load(from: flipped), "the format alone cannot tell")
        XCTAssertThrowsError(try Network.loadChecked(from: flipped)) { error in
            XCTAssertTrue("\(error)".contains("damaged"), "\(error)")
        }

        let broken = folder.file("nan.safetensors")
        network.parameters[5] = .nan
        try network.save(to: broken, configuration: TrainingConfiguration(), testAccuracy: 0.5)
        XCTAssertThrowsError(try Network.loadChecked(from: broken)) { error in
            XCTAssertTrue("\(error)".contains("weight 5") && "\(error)".contains("nan"), "\(error)")
        }
        for model in [flipped, broken] {
            let evaluate = try Subprocess.capture(
                [Products.mnist.path, "evaluate", "--json", "--model", model.path, "--data", data.url.path], timeout: 60
            )
            XCTAssertNotEqual(evaluate.status, 0)
            XCTAssertEqual(evaluate.standardOutput, "", "no JSON for a refused model")
            XCTAssertTrue(evaluate.standardError.contains(model.path), evaluate.standardError)
            let predict = try Subprocess.capture(
                [Products.mnist.path, "predict", "--json", "--model", model.path, good.path], timeout: 60)
            XCTAssertNotEqual(predict.status, 0)
            XCTAssertFalse(predict.standardOutput.contains("{}"), predict.standardOutput)
        }
    }

    /// A checkpoint read back is the state that was written; a model file is not a checkpoint.
    func testACheckpointRoundTrips() throws {
        var configuration = TrainingConfiguration()
        configuration.optimizer = .adam
        let step = try TrainingStep(configuration: configuration, sampleCount: 256)
        var random = TestGenerator(seed: 4)
        let count = step.network.parameterCount
        let state = Checkpoint(
            step: 17, configuration: configuration, dataFingerprint: "abc", weights: random.uniformArray(count),
            firstMoment: random.uniformArray(count), secondMoment: random.uniformArray(count),
            average: random.uniformArray(count))
        let directory = try TemporaryDirectory("checkpoint-unit")
        let url = directory.file("c.safetensors")
        let modelNetwork = try TrainingStep.inferenceModel(
            architecture: step.network.architecture, parameters: state.average, calibration: [])
        try state.write(to: url, model: modelNetwork)
        XCTAssertEqual(try Checkpoint.read(from: url, parameterCount: count), state)
        let (model, _) = try Network.load(from: url)
        XCTAssertTrue(
            model.parameters == modelNetwork.parameters && model.architecture == modelNetwork.architecture,
            "the model in a checkpoint is the moving average as the inference model (folded)")
        XCTAssertFalse(model.architecture.layers.contains(.batchNorm))
        XCTAssertNotNil(state.mismatch(configuration: TrainingConfiguration(), dataFingerprint: "other"))
        XCTAssertNil(state.mismatch(configuration: configuration, dataFingerprint: "abc"))

        try step.network.save(to: directory.file("m.safetensors"), configuration: configuration, testAccuracy: 0.5)
        XCTAssertThrowsError(try Checkpoint.read(from: directory.file("m.safetensors"), parameterCount: count)) {
            XCTAssertTrue("\($0)".contains("not a checkpoint"), "\($0)")
        }
    }
}
