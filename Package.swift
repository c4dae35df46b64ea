// swift-tools-version:6.1
// A synchronous data-parallel MNIST trainer whose coordinator and workers talk over ZeroMQ.
// Modules depend downwards only: mnist -> Dashboard -> Training -> {ConvNet, MNIST, DataParallel, ZeroMQ, Host} -> C shims.
import PackageDescription

/// Numeric kernels are compiled optimised in every configuration so that debug test runs
/// still train in seconds; bounds checks stay on in the rest of the project.
let optimised: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]

/// Code that reads files, uploads or the wire (the MNIST module: IDX, gzip, PNG, PGM/PPM and the
/// preprocessing of what they decode) is optimised in every configuration too, so debug test runs
/// stay quick, but keeps its bounds and overflow checks: a hostile file must stop with an error or
/// a trap, never read or write out of bounds. -Ounchecked bought nothing measurable there: loading
/// the training set and `mnist predict` on 40 1000x1000 PNGs take the same time either way.
let checkedOptimised: [SwiftSetting] = [.unsafeFlags(["-O"])]

/// The engine's loops are vectorised for AVX2 and FMA (x86-64-v3: every x86 server CPU since
/// 2015). `MNIST_CPU=x86-64` builds for older x86 CPUs, `MNIST_CPU=native` for the build machine;
/// `mnist` refuses to start on a CPU that lacks what its engine was built for.
#if arch(x86_64)
    let engineCPU = Context.environment["MNIST_CPU"] ?? "x86-64-v3"
    let engine: [SwiftSetting] =
        optimised + [.unsafeFlags(["-Xcc", "-march=\(engineCPU)"])]
        + (["x86-64-v3", "native"].contains(engineCPU) ? [.define("ENGINE_FMA")] : [])
    let command: [SwiftSetting] = engineCPU == "x86-64-v3" ? [.define("ENGINE_X86_64_V3")] : []
#else
    let engine: [SwiftSetting] = optimised + [.define("ENGINE_FMA")]
    let command: [SwiftSetting] = []
#endif

let package = Package(
    name: "mnist",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "mnist", targets: ["mnist"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // HTTP for `mnist serve` and the training dashboard; swift-configuration is not needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0", traits: ["FullFoundation"]),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // C libraries, found with pkg-config; each is imported by exactly one Swift module.
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(
            name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),

        .target(name: "ConvNet", dependencies: ["COpenBLAS"], swiftSettings: engine),
        .target(
            name: "MNIST",
            dependencies: [
                "CZlib", "CPNG", "CTurboJPEG", "Host", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: checkedOptimised),
        // Processes, CPU counts and features, signals: the operating system outside math and sockets.
        .target(name: "Host"),
        .target(name: "DataParallel", exclude: ["PROTOCOL.md"]),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),
        .target(
            name: "Training",
            dependencies: [
                "ConvNet", "MNIST", "DataParallel", "ZeroMQ", "Host",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // HTTP: `mnist serve` (draw-a-digit page, POST /predict), Prometheus /metrics.
        .target(
            name: "Dashboard",
            dependencies: [
                "Training", "MNIST", "ConvNet",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "mnist",
            dependencies: [
                "Training", "Dashboard", "MNIST", "ConvNet", "Host",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: command),

        // Optimised (with its checks): the photo renderer draws hundreds of photos per run.
        .target(
            name: "TestSupport", dependencies: ["MNIST", "DataParallel", "Host"], path: "Tests/TestSupport",
            swiftSettings: checkedOptimised),
        .testTarget(name: "ConvNetTests", dependencies: ["ConvNet", "TestSupport"]),
        .testTarget(name: "MNISTTests", dependencies: ["MNIST", "CTurboJPEG", "Host", "TestSupport"]),
        .testTarget(name: "HostTests", dependencies: ["Host", "TestSupport"]),
        .testTarget(name: "DataParallelTests", dependencies: ["DataParallel", "TestSupport"]),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ", "DataParallel", "TestSupport"]),
        .testTarget(
            name: "TrainingTests",
            dependencies: ["Training", "ConvNet", "MNIST", "Host", "ZeroMQ", "DataParallel", "TestSupport"]),
        .testTarget(
            name: "DashboardTests",
            dependencies: [
                "Dashboard", "Training", "ConvNet", "MNIST", "Host", "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
