import TaskWatchWire

extension Registry {
    func applyHello(
        _ hello: Hello,
        to client: inout ClientState,
        state: inout State
    ) -> Result<Void, FrameRejection> {
        if client.hello != nil { return .failure(.duplicateHello) }
        var names = Set<String>()
        // `le` is reserved with `process` and `pid`: a hello label is added to every series of the
        // connection, so on a histogram it would sit beside the bucket's own `le`, a line that neither
        // format allows (promtool refuses it). A declaration's `le` is refused only on histograms, but a
        // hello comes before the declarations, so its `le` is refused whatever they turn out to be.
        for label in hello.labels {
            guard Names.isValidLabelName(label.name), label.name != "process", label.name != "pid",
                label.name != "le", names.insert(label.name).inserted
            else { return .failure(.invalidHello) }
        }
        let identity = [Label("process", hello.process), Label("pid", String(client.peer.pid))]
        let labelText = Escaping.labelText(identity + hello.labels)
        let connectionBytes = Self.connectionLineBytes(connectionLabels: labelText.count)
        // A hello late enough that a connection accepted after this one, from a process started since
        // under the same pid, said hello first: this connection's process had exited when that one
        // connected (a descendant holds it), so its pid now names the other process. It is closed as
        // if taken over, and, as a taken-over one does, reconnects under its own pid.
        if state.clients.values.contains(where: { $0.hello != nil && Self.hadExited(client, when: $0) }) {
            client.superseded = true
            return .success(())
        }
        // This hello takes over from earlier clients of its pid (never 0: refused at connect). Their
        // series go at once, as at the end of a grace period; a connected one is closed at its next
        // frame. Taken over are:
        // - Those under the same process name, whose series would otherwise be exposed twice: the same
        //   process reconnecting, or an exited one whose pid this process now has. Start times are not
        //   needed to decide: whichever it was, the pid is this connection's now, and a reconnect whose
        //   start time `/proc` hides (`hidepid`) must not leave its old series beside the new ones.
        // - Those under any name whose process had exited when this one connected (`hadExited`: the pid
        //   was reused). Kept, they would show through their grace period a pid that now belongs to
        //   another process. One still connected is a connection a descendant inherited from the exited
        //   process: its series name a pid that is not its sender's; closed, it reconnects under its own.
        // Connections of one process under different names stay side by side.
        for (other, earlier) in state.clients
        where earlier.peer.pid == client.peer.pid
            && (earlier.hello?.process == hello.process
                || (earlier.hello != nil && Self.hadExited(earlier, when: client)))
        {
            if !earlier.connected { Self.releaseGraceHeld(earlier, in: &state) }
            removeSeries(of: earlier, from: &state)
            var gone = earlier
            Self.dropPending(of: &gone, in: &state)
            Self.dropConflicted(of: &gone, in: &state)
            if earlier.connected {
                var retired = ClientState(
                    connection: other, peer: earlier.peer, processStartTicks: earlier.processStartTicks)
                retired.superseded = true
                state.clients[other] = retired
            } else {
                state.clients[other] = nil
            }
        }
        // The connection's own lines count against the overall budget like series: 4,096 connections
        // with 8 KiB of hello labels each would otherwise add about 270 MB to every scrape, past any
        // budget. Checked after the takeover above, which may have freed room. Refused, the connection is
        // closed: without a hello it can report nothing.
        while state.labelBytes + state.families.helpBytes + connectionBytes > limits.maxLabelBytes {
            guard evictGraceHeld(&state) else {
                client.refused = .byteLimit
                return .success(())
            }
        }
        client.hello = hello
        client.labelText = labelText
        client.connectionBytes = connectionBytes
        state.labelBytes += connectionBytes
        return .success(())
    }

    /// Whether the process that opened `earlier`'s connection had exited by the time `later`'s was
    /// opened, under the same pid: the start times read then (in accept order, which connection ids
    /// follow) differ. Never when either is unknown: nil matches nothing, not even nil. A connection
    /// opened after `later`'s never counts, as its start time is the newer reading.
    private static func hadExited(_ earlier: ClientState, when later: ClientState) -> Bool {
        guard earlier.peer.pid == later.peer.pid, earlier.connection.rawValue < later.connection.rawValue,
            let before = earlier.processStartTicks, let after = later.processStartTicks
        else { return false }
        return before != after
    }

    /// Frees the series of the client that left longest ago, held only for its grace period, to make
    /// room under the daemon's caps for a live client's series: a process that comes and goes under
    /// new names must not fill the caps with series nobody reports any more. False when there is none.
    ///
    /// Scans the clients only while `graceHeld` says some are gone; a count that ran high (a gone
    /// client removed some other way) is corrected by the scan that finds none.
    ///
    /// - Parameter uid: only a client of this uid, to make room under `maxSeriesPerUID`.
    func evictGraceHeld(_ state: inout State, uid: UInt32? = nil) -> Bool {
        guard state.graceHeld > 0 else { return false }
        // Without this, every declaration refused at a uid's cap scanned all clients while any other
        // uid's client was gone: thousands of scans a frame, under the lock.
        if let uid, state.usageByUID[uid]?.graceHeld ?? 0 <= 0 { return false }
        var oldest: (id: ConnectionID, since: UInt64)?
        for (id, client) in state.clients
        where !client.connected && !client.superseded && (uid == nil || client.peer.uid == uid) {
            if oldest.map({ client.disconnectedAt < $0.since }) ?? true { oldest = (id, client.disconnectedAt) }
        }
        guard let oldest, let client = state.clients.removeValue(forKey: oldest.id) else {
            // Only a scan of every uid proves that no client is held.
            if uid == nil { state.graceHeld = 0 }
            return false
        }
        Self.releaseGraceHeld(client, in: &state)
        removeSeries(of: client, from: &state)
        return true
    }

    /// Counts a gone client out of the grace-held ones, before its series are removed (which forgets
    /// its uid's entry once nothing is left in it).
    static func releaseGraceHeld(_ client: ClientState, in state: inout State) {
        state.graceHeld = max(0, state.graceHeld - 1)
        state.usageByUID[client.peer.uid]?.graceHeld -= 1
    }

    func removeSeries(of client: ClientState, from state: inout State) {
        for (family, count) in client.familyCounts { Self.releaseFamily(family, count: count, in: &state) }
        state.seriesTotal -= client.liveCount
        // A connection's own lines free room in the byte budget too.
        if client.liveCount > 0 || client.connectionBytes > 0 { state.seriesFreed &+= 1 }
        state.labelBytes -= client.labelBytes + client.connectionBytes
        state.usageByUID[client.peer.uid, default: UIDUsage()].series -= client.liveCount
        if client.liveCount > 0 { Self.uidFreed(client.peer.uid, in: &state) }
        Self.forgetIfUnused(client.peer.uid, in: &state)
    }

    /// Drops a uid's entry once it has no connection and no series, so uids that come and go leave
    /// nothing behind.
    static func forgetIfUnused(_ uid: UInt32, in state: inout State) {
        if let usage = state.usageByUID[uid], usage.connections <= 0, usage.series <= 0, usage.graceHeld <= 0 {
            state.usageByUID[uid] = nil
        }
    }
}
