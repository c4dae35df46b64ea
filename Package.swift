// swift-tools-version:6.0
// A synchronous data-parallel MNIST trainer whose coordinator and workers talk over ZeroMQ.
// Modules depend downwards only: mnist -> Training -> {ConvNet, MNIST, DataParallel, ZeroMQ} -> C shims.
import PackageDescription

/// Numeric kernels are compiled optimised in every configuration so that debug test runs
/// still train in seconds; bounds checks stay on in the rest of the project.
let optimised: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]

let package = Package(
    name: "mnist",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mnist", targets: ["mnist"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        // C libraries, found with pkg-config; each is imported by exactly one Swift module.
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),

        .target(name: "ConvNet", dependencies: ["COpenBLAS"], swiftSettings: optimised),
        .target(
            name: "MNIST",
            dependencies: ["CZlib", "CPNG", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: optimised),
        .target(name: "DataParallel", exclude: ["PROTOCOL.md"]),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),
        .target(
            name: "Training",
            dependencies: [
                "ConvNet", "MNIST", "DataParallel", "ZeroMQ",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "mnist",
            dependencies: [
                "Training", "MNIST", "ConvNet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        .target(name: "TestSupport", dependencies: ["MNIST", "DataParallel"], path: "Tests/TestSupport"),
        .testTarget(name: "ConvNetTests", dependencies: ["ConvNet", "TestSupport"]),
        .testTarget(name: "MNISTTests", dependencies: ["MNIST", "TestSupport"]),
        .testTarget(name: "DataParallelTests", dependencies: ["DataParallel", "TestSupport"]),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ", "DataParallel", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "ConvNet", "MNIST", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
