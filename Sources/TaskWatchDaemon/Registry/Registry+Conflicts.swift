import TaskWatchWire

extension Registry {
    /// The names on which a declaration can clash with a family: its name as shown, and the names its
    /// family would write besides (`FamilyTable.admit` refuses a clash on any of them).
    static func conflictNames(of declaration: SeriesDeclaration) -> [String] {
        let shown = declaration.type.exposedName(declaration.name)
        return [shown] + declaration.type.derivedNames(of: shown)
    }

    /// Keeps a declaration refused as a `conflict` with a family that can go, to be tried again once it
    /// has (`retryConflicted`). The client library declares each series once per connection: without
    /// this, a release that changed a metric's labels or type, started while the previous release's
    /// process still held the name (running, or in its grace period after a crash), never showed that
    /// metric until its process reconnected, long after the old series were gone. Not kept: a clash with
    /// the client library's own names (`ContractSeries`), which never go, an id not marked dropped (past
    /// the bound on those), or past the bytes waiting declarations may hold, counted apart.
    ///
    /// - Parameter stamp: when it was first refused, to keep its place among the kept ones tried again;
    ///   a new stamp when nil.
    func keepConflicted(
        _ declaration: SeriesDeclaration, stamp: UInt64? = nil, of client: inout ClientState, in state: inout State
    ) {
        let shown = declaration.type.exposedName(declaration.name)
        let labelNames = declaration.labels.map(\.name).sorted()
        let names = Self.conflictNames(of: declaration)
        let cost = PendingDeclaration.keptCost(of: declaration, names: names)
        guard client.indexByID[declaration.id] == ClientState.droppedID,
            ContractSeries.admits(name: shown, type: declaration.type, labelNames: labelNames),
            client.conflictedBytes + cost <= limits.maxLabelBytesPerClient,
            state.conflictedBytes + cost <= limits.maxLabelBytes
        else { return }
        if stamp == nil { state.waitStamps &+= 1 }
        let stamp = stamp ?? state.waitStamps
        client.conflicted[declaration.id] = KeptDeclaration(declaration: declaration, stamp: stamp)
        client.conflictedBytes += cost
        state.conflictedBytes += cost
        state.conflictedCount += 1
        for name in names {
            state.conflictWaiters[name, default: [:]][client.connection, default: [:]][declaration.id] = stamp
        }
    }

    /// Forgets a declaration kept after a conflict (its id stays marked dropped).
    static func forgetConflicted(_ id: UInt32, of client: inout ClientState, in state: inout State) {
        guard let declaration = client.conflicted.removeValue(forKey: id)?.declaration else { return }
        let names = conflictNames(of: declaration)
        let cost = PendingDeclaration.keptCost(of: declaration, names: names)
        client.conflictedBytes -= cost
        state.conflictedBytes -= cost
        state.conflictedCount -= 1
        // Its entry in `conflictQueue`, if due, is skipped when met.
        for name in names {
            guard var waiters = state.conflictWaiters.removeValue(forKey: name) else { continue }
            waiters[client.connection]?[id] = nil
            if waiters[client.connection]?.isEmpty == true { waiters[client.connection] = nil }
            if !waiters.isEmpty { state.conflictWaiters[name] = waiters }
        }
    }

    /// Forgets every declaration a connection that closed (or was taken over) kept after a conflict.
    static func dropConflicted(of client: inout ClientState, in state: inout State) {
        for id in Array(client.conflicted.keys) { forgetConflicted(id, of: &client, in: &state) }
    }

    /// Takes series from a family and, when it goes, makes the declarations kept after a conflict on
    /// one of its names due for a try at the next tick, in the order they were refused. Each is queued
    /// once, and leaves the name's waiters until kept again: a client that frees a name in a loop
    /// queues nothing more meanwhile.
    static func releaseFamily(_ index: Int, count: Int, in state: inout State) {
        guard let gone = state.families.release(index, count: count), !state.conflictWaiters.isEmpty else { return }
        var freed: [(stamp: UInt64, key: ConflictKey)] = []
        for name in [gone.name] + gone.type.derivedNames(of: gone.name) {
            guard let waiters = state.conflictWaiters.removeValue(forKey: name) else { continue }
            for (connection, ids) in waiters {
                for (id, stamp) in ids { freed.append((stamp, ConflictKey(connection: connection, id: id))) }
            }
        }
        // Oldest first: by connection and id, a connection accepted earlier, or a lower id, took the
        // name from a declaration that clashes with it too and was refused before it.
        freed.sort { $0.stamp < $1.stamp }
        for (_, key) in freed where state.conflictDue.insert(key).inserted { state.conflictQueue.append(key) }
    }

    /// Kept declarations tried again at a tick at most. A try costs about what admitting a declaration
    /// does (2 µs in the release build): were all due ones tried at once, a client keeping thousands
    /// refused on one name and retiring the series that holds it, frame after frame, had each small
    /// frame cost the ingest thread 21 ms (10,000 kept, measured). Ten ticks a second bound it to about
    /// 2 % of a core, and a release's renamed metric still shows within a tick or a few.
    static let conflictRetryBatch = 1_024

    /// Tries again, as new declarations of their connections, the declarations kept after a conflict
    /// that are due (a family of a name they clash on went), oldest first, `conflictRetryBatch` at most.
    /// Admitted, one is shown from its next value, counted no more; refused at a limit, it waits as any
    /// declaration does; in conflict again (another family took the name first), it is kept again.
    /// Costs nothing while none is due.
    ///
    /// Runs only with every connection in `State.clients`.
    func retryConflicted(_ state: inout State) {
        guard state.conflictQueueHead < state.conflictQueue.count else { return }
        // Entries of declarations forgotten meanwhile (retired, or their connection closed) are skipped
        // when met; a client that keeps, frees and retires in a loop would otherwise grow the queue
        // faster than the ticks go through it.
        if state.conflictQueue.count - state.conflictQueueHead > 2 * state.conflictedCount + Self.conflictRetryBatch {
            let live = state.conflictQueue[state.conflictQueueHead...].filter { key in
                state.clients[key.connection]?.conflicted[key.id] != nil
            }
            state.conflictDue = Set(live)
            state.conflictQueue = live
            state.conflictQueueHead = 0
        }
        var tried = 0
        while tried < Self.conflictRetryBatch, state.conflictQueueHead < state.conflictQueue.count {
            let key = state.conflictQueue[state.conflictQueueHead]
            state.conflictQueueHead += 1
            state.conflictDue.remove(key)
            guard let slot = state.clients.index(forKey: key.connection),
                let kept = state.clients.values[slot].conflicted[key.id]
            else { continue }
            let declaration = kept.declaration
            tried += 1
            state.conflictTries += 1
            // Out of the dictionary while it changes, so that its tables are not copied.
            var client = state.clients.remove(at: slot).value
            Self.forgetConflicted(key.id, of: &client, in: &state)
            let result: Result<Void, SeriesRejection>
            if let ahead = waitingAhead(of: &client, state: state) {
                result = .failure(ahead)
            } else {
                result = admit(declaration, in: &client, state: &state)
            }
            switch result {
            case .success:
                client.droppedIDs -= 1
            case .failure(.conflict):
                keepConflicted(declaration, stamp: kept.stamp, of: &client, in: &state)
            case .failure(let reason):
                if wait(declaration, refusedFor: reason, in: &client, state: &state) { client.droppedIDs -= 1 }
            }
            state.clients[key.connection] = client
        }
        if state.conflictQueueHead == state.conflictQueue.count {
            state.conflictQueue.removeAll(keepingCapacity: state.conflictQueue.count <= 1_024)
            state.conflictQueueHead = 0
        } else if state.conflictQueueHead >= 4_096, 2 * state.conflictQueueHead >= state.conflictQueue.count {
            state.conflictQueue.removeFirst(state.conflictQueueHead)
            state.conflictQueueHead = 0
        }
    }
}
