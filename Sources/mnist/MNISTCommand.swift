// The `mnist` command: a root command and its subcommand list. Each subcommand lives in its own file.
import ArgumentParser
import Foundation
import Host
import Training

@main
struct MNISTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mnist",
        abstract: "Train a convolutional network on MNIST, on one machine or across many over ZeroMQ.",
        version: "0.1.0",
        subcommands: [
            Fetch.self, Train.self, Coordinator.self, Worker.self, Evaluate.self, Calibrate.self, Predict.self,
            Serve.self,
            Export.self,
            Keygen.self,
            Bench.self,
        ])

    static func main() {
        EngineCPU.exitIfUnsupported()
        main(nil)
    }
}

/// The engine is compiled for a CPU level (see Package.swift); on a CPU below it, its first
/// vector instruction would kill the process with SIGILL. Say so instead, before any of it runs.
enum EngineCPU {
    static func exitIfUnsupported() {
        #if ENGINE_X86_64_V3
            guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return }
            let missing = CPUFeatures.missing(CPUFeatures.x86_64_v3, cpuinfo: cpuinfo)
            guard !missing.isEmpty else { return }
            FileHandle.standardError.write(
                Data(
                    ("error: this build of mnist uses x86-64-v3 instructions (AVX2, FMA) and this CPU lacks "
                        + missing.joined(separator: ", ")
                        + ". Rebuild for it: MNIST_CPU=x86-64 swift build -c release\n").utf8))
            exit(1)
        #endif
    }
}
