// The ZeroMQ wrapper against the real libzmq: version and capabilities, ROUTER/DEALER multipart round
// trips over tcp (ephemeral port) and inproc, poll timeouts, CURVE, and errors that name the call.
// Timeouts here are generous upper bounds on waiting for loopback traffic, never timing assertions.
import XCTest
import ZeroMQ

final class ZeroMQTests: XCTestCase {
    func testLinkedLibraryIsRecentAndHasCurve() {
        let version = ZeroMQLibrary.version
        XCTAssertFalse(
            [version.major, version.minor, version.patch].lexicographicallyPrecedes([4, 3, 3]),
            "libzmq \(version) is older than 4.3.3")
        XCTAssertTrue(ZeroMQLibrary.has("curve"), "libzmq was built without CURVE")
    }

    /// A worker-like DEALER with a routing id talks to a coordinator-like ROUTER and back.
    func roundTrip(bindTo endpoint: String, configure: (Socket, Socket) throws -> Void = { _, _ in }) throws {
        let context = try Context()
        let router = try context.makeSocket(.router)
        let dealer = try context.makeSocket(.dealer)
        try router.setRouterMandatory(true)
        try dealer.setRoutingID(Array("worker-1".utf8))
        try configure(router, dealer)
        let bound = try router.bind(endpoint)
        if endpoint.hasPrefix("tcp://") {
            XCTAssertTrue(bound.hasPrefix("tcp://127.0.0.1:") && !bound.hasSuffix(":*"), bound)
        }
        try dealer.connect(bound)

        let big = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let frames: [[UInt8]] = [[1, 2, 3], [], big]
        XCTAssertTrue(try dealer.send(frames))
        let received = try XCTUnwrap(router.receive(timeoutMilliseconds: 10_000), "nothing arrived at the ROUTER")
        XCTAssertEqual(received.count, 4)
        XCTAssertEqual(received[0], Array("worker-1".utf8), "frame 0 is the sender's routing id")
        XCTAssertEqual(Array(received.dropFirst()), frames)

        XCTAssertTrue(try router.send([received[0], [9], [8, 7]]))
        let reply = try XCTUnwrap(dealer.receive(timeoutMilliseconds: 10_000), "nothing arrived at the DEALER")
        XCTAssertEqual(reply, [[9], [8, 7]])
    }

    /// One `Frame` (large, so libzmq shares its buffer instead of copying it) goes to two peers and
    /// stays intact for the sender; received frames hold exactly the bytes sent.
    func testOneFrameSentToTwoPeersArrivesWholeAtBoth() throws {
        let context = try Context()
        let router = try context.makeSocket(.router)
        try router.setRouterMandatory(true)
        let endpoint = try router.bind("inproc://shared-frame-\(UInt64.random(in: 0...UInt64.max))")
        var dealers: [Socket] = []
        for name in ["a", "b"] {
            let dealer = try context.makeSocket(.dealer)
            try dealer.setRoutingID(Array(name.utf8))
            try dealer.connect(endpoint)
            XCTAssertTrue(try dealer.send([[0]]))
            let hello = try XCTUnwrap(router.receive(timeoutMilliseconds: 10_000), "no hello from \(name)")
            XCTAssertEqual(hello, [Array(name.utf8), [0]])
            dealers.append(dealer)
        }
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        let shared = Frame(byteCount: payload.count) { target in
            for index in payload.indices { target[index] = payload[index] }
        }
        XCTAssertEqual(shared.byteCount, payload.count)
        for name in ["a", "b"] {
            XCTAssertTrue(try router.send([Frame(Array(name.utf8)), Frame([42]), shared]))
        }
        XCTAssertEqual(shared.bytes, payload, "sending must not consume or change the frame")
        for dealer in dealers {
            let frames = try XCTUnwrap(
                try dealer.poll(.readable, timeoutMilliseconds: 10_000).contains(.readable)
                    ? dealer.receiveFrames() : nil, "nothing arrived")
            XCTAssertEqual(frames.map(\.byteCount), [1, payload.count])
            XCTAssertEqual(frames[0].bytes, [42])
            XCTAssertTrue(frames[1].withUnsafeBytes { $0.elementsEqual(payload) })
        }
        XCTAssertNil(try dealers[0].receiveFrames(), "one message each, no more")
    }

    /// A frame that shares an array's storage sends the array's values as they were when the frame was
    /// made, even if the array is changed before the send, and gives the storage back once libzmq is
    /// done with it (the array is then changed in place again, not copied).
    func testAFrameSharingAnArraySendsItsValuesAndReleasesItsStorage() throws {
        let context = try Context()
        let receiver = try context.makeSocket(.pair)
        let endpoint = "inproc://shared-array-\(UInt64.random(in: 0...UInt64.max))"
        try receiver.bind(endpoint)
        let sender = try context.makeSocket(.pair)
        try sender.connect(endpoint)
        func passThrough(_ frame: Frame) throws -> [Float] {
            XCTAssertTrue(try sender.send([frame]))
            let received = try XCTUnwrap(
                try receiver.poll(.readable, timeoutMilliseconds: 10_000).contains(.readable)
                    ? receiver.receiveFrames() : nil, "nothing arrived")
            XCTAssertEqual(received.count, 1)
            return received[0].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        func storage(_ array: [Float]) -> UnsafePointer<Float>? { array.withUnsafeBufferPointer { $0.baseAddress } }

        let original = (0..<100_000).map { Float($0) * 0.5 - 7 }
        var changed = original.map { $0 }  // Storage of its own.
        let changedStorage = storage(changed)
        do {
            let frame = Frame(sharing: changed)
            XCTAssertEqual(frame.byteCount, original.count * 4)
            changed[0] = 1e9  // The frame holds the storage, so this write goes to a copy.
            XCTAssertNotEqual(storage(changed), changedStorage)
            XCTAssertEqual(try passThrough(frame), original)
        }

        var kept = original.map { $0 }
        let keptStorage = storage(kept)
        do { XCTAssertEqual(try passThrough(Frame(sharing: kept)), original) }
        // The frame, the sent message and the received frame are gone: `kept` owns its storage alone.
        kept[0] = 1e9
        XCTAssertEqual(storage(kept), keptStorage, "libzmq did not give the array's storage back")
        XCTAssertEqual(Frame(sharing: [Float]()).byteCount, 0)
    }

    func testRouterDealerRoundTripOverTCPWithAnEphemeralPort() throws {
        try roundTrip(bindTo: "tcp://127.0.0.1:*")
    }

    func testRouterDealerRoundTripOverInproc() throws {
        try roundTrip(bindTo: "inproc://round-trip-\(UInt64.random(in: 0...UInt64.max))")
    }

    func testCurveSecuredRoundTrip() throws {
        let server = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        XCTAssertEqual(server.publicKey.count, 40)
        XCTAssertNotEqual(server, client)
        try roundTrip(bindTo: "tcp://127.0.0.1:*") { router, dealer in
            try router.makeCurveServer(secretKey: server.secretKey)
            try dealer.makeCurveClient(serverPublicKey: server.publicKey, keyPair: client)
        }
    }

    func testCurveClientWithTheWrongServerKeyGetsNothing() throws {
        let context = try Context()
        let router = try context.makeSocket(.router)
        let dealer = try context.makeSocket(.dealer)
        try router.makeCurveServer(secretKey: try CurveKeyPair.generate().secretKey)
        try dealer.makeCurveClient(
            serverPublicKey: try CurveKeyPair.generate().publicKey, keyPair: try CurveKeyPair.generate())
        try dealer.connect(try router.bind("tcp://127.0.0.1:*"))
        _ = try dealer.send([[1]], wait: false)
        XCTAssertNil(try router.receive(timeoutMilliseconds: 300), "the handshake must fail")
    }

    func testPollTimeoutReturnsNothing() throws {
        let context = try Context()
        let router = try context.makeSocket(.router)
        try router.bind("tcp://127.0.0.1:*")
        XCTAssertEqual(try router.poll(.readable, timeoutMilliseconds: 20), [])
        XCTAssertNil(try router.receive())
        XCTAssertNil(try router.receive(timeoutMilliseconds: 20))
        XCTAssertEqual(
            try router.poll(.readable, timeoutMilliseconds: -5), [], "a negative timeout must not mean forever")
    }

    func testSocketsStartWithLingerZero() throws {
        let context = try Context()
        XCTAssertEqual(try context.makeSocket(.dealer).linger(), 0)
    }

    func testErrorsNameTheCallAndStrerror() throws {
        let context = try Context()
        let router = try context.makeSocket(.router)
        XCTAssertThrowsError(try router.bind("tcp://not an endpoint")) { error in
            let error = error as? ZeroMQError
            XCTAssertEqual(error?.call, "zmq_bind(tcp://not an endpoint)")
            XCTAssertFalse(error?.message.isEmpty ?? true)
            XCTAssertTrue(
                error?.description.contains("zmq_bind") == true
                    && error?.description.contains(error?.message ?? "?") == true,
                "\(String(describing: error))")
        }
        XCTAssertThrowsError(try router.connect("bogus://x")) { error in
            XCTAssertEqual((error as? ZeroMQError)?.message, "Protocol not supported", "\(error)")
            XCTAssertTrue("\(error)".hasPrefix("zmq_connect(bogus://x) failed: Protocol not supported"), "\(error)")
        }
        try router.setRouterMandatory(true)
        try router.bind("tcp://127.0.0.1:*")
        XCTAssertThrowsError(try router.send([Array("nobody".utf8), [1]])) { error in
            XCTAssertTrue((error as? ZeroMQError)?.isHostUnreachable == true, "\(error)")
        }
        router.close()
        XCTAssertThrowsError(try router.receive()) { error in
            XCTAssertTrue("\(error)".contains("zmq_msg_recv"), "\(error)")
        }
    }
}
