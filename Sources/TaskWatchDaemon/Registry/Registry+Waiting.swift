import TaskWatchWire

extension Registry {
    /// Keeps a declaration refused at a limit whose room can free up, to be admitted once it does
    /// (`admitWaiting`), and says whether it does. The client library declares each series once per
    /// connection and cannot see a refusal, so without this a few seconds of another client at
    /// `--ingest.max-series` (or the byte budget, or the uid's cap) would remove its series until it
    /// reconnects. The connection's own cap frees only when it retires series, but it may well do so.
    ///
    /// Bounded like the series themselves, by their own copy of the limits: a connection keeps at most
    /// `maxSeriesPerClient` waiting declarations and `maxLabelBytesPerClient` bytes of them, all
    /// connections together `maxLabelBytes`, counted by `PendingDeclaration.cost` (what one holds in
    /// memory, not what it would add to `/metrics`: waiting, it adds nothing). Past that, it is dropped
    /// as before. A declaration that could never be admitted does not wait: one that breaks a rule of
    /// its own (its name or labels), or whose lines alone take more bytes than the connection may ever
    /// hold (`canEverFit`).
    func wait(
        _ declaration: SeriesDeclaration, refusedFor reason: SeriesRejection, in client: inout ClientState,
        state: inout State
    ) -> Bool {
        guard reason.canWait, client.pending.count < limits.maxSeriesPerClient else { return false }
        let cost = PendingDeclaration.cost(of: declaration)
        let shownName = declaration.type.exposedName(declaration.name)
        guard client.pendingBytes + cost <= limits.maxLabelBytesPerClient,
            state.pendingBytes + cost <= limits.maxLabelBytes,
            case .success = Self.checkNames(declaration, shownName: shownName, hello: client.hello),
            canEverFit(declaration, shownName: shownName, of: client)
        else { return false }
        let first = client.pending.isEmpty
        state.waitStamps &+= 1
        client.enqueuePending(
            declaration, reason: reason, cost: cost, hash: SeriesIdentity.hash(declaration), stamp: state.waitStamps)
        state.pendingBytes += cost
        // Behind others of the connection, it is tried after them; first, it takes its place in the
        // daemon's order, or is set aside at a limit of the connection's or its uid's own.
        if first {
            queueOrPark(&client, after: reason, declaration: declaration, stamp: state.waitStamps, state: &state)
        }
        return true
    }

    /// What a new declaration of `client` would wait behind, by the limit it would wait on: the
    /// connection's own waiting declarations (they are admitted in order), one blocked at a limit
    /// every declaration needs room under, or a connection of the same uid set aside at its cap. Nil
    /// when it may be tried at once.
    func waitingAhead(of client: inout ClientState, state: borrowing State) -> SeriesRejection? {
        if let head = client.waitingHead() { return client.pending[head.id]?.reason }
        if let blocked = state.waitBlocked { return blocked }
        // A try stopped at its batch: the ones left are older.
        if state.waitRetryForced && !state.waitQueue.isEmpty { return .globalLimit }
        if limits.maxSeriesPerUID > 0, state.parkedByUID[client.peer.uid] != nil { return .uidLimit }
        return nil
    }

    /// Puts a connection whose oldest waiting declaration was just refused at `reason` in the daemon's
    /// order, under the declaration's stamp, or sets it aside until its own limit frees: whatever else
    /// goes, it could not fit, and trying it at every series gone would cost a check per waiting
    /// connection each time. Returns whether the limit is one every declaration needs room under.
    @discardableResult
    private func queueOrPark(
        _ client: inout ClientState, after reason: SeriesRejection, declaration: SeriesDeclaration, stamp: UInt64,
        state: inout State
    ) -> Bool {
        switch reason {
        case .clientLimit:
            client.waiting = .parkedOnOwn
        case .uidLimit:
            client.waiting = .parkedOnUID
            let uid = client.peer.uid
            state.parkedByUID[uid, default: ParkedUID()].park(stamp: stamp, connection: client.connection)
            // Connections of the uid that park and close while one stays parked (so the uid is never
            // freed) would otherwise leave a stale ticket each, for good.
            if let parked = state.parkedByUID[uid], parked.queue.count > 2 * parked.count + 64 {
                Self.compactParked(uid, keeping: client.connection, in: &state)
            }
        case .byteLimit where exceedsOwnBytes(declaration, of: client):
            client.waiting = .parkedOnOwn
        default:
            client.waiting = .queued
            state.waitQueue.push(stamp: stamp, connection: client.connection)
            return true
        }
        return false
    }

    /// Whether a declaration refused at `byte_limit` ran into the connection's own budget rather than
    /// all connections': only the connection's own retires make room under it.
    private func exceedsOwnBytes(_ declaration: SeriesDeclaration, of client: borrowing ClientState) -> Bool {
        let bytes = Self.chargedBytes(
            name: declaration.type.exposedName(declaration.name),
            labelText: Escaping.labelText(declaration.labels).count, connectionLabels: client.labelText.count,
            bounds: declaration.type == .histogram ? declaration.bounds.count : nil)
        return client.labelBytes + bytes > limits.maxLabelBytesPerClient
    }

    /// Whether the declaration's lines fit the byte budgets once everything else the connection and
    /// the daemon hold has gone, but the connection's own lines. One that does not (a histogram of 256
    /// bounds is 259 lines: with its and the hello's labels at 65 KB, 16.8 MB, past the default 16 MiB) is
    /// refused at `byte_limit` at every retry, and as retries go in order and stop at the first refused,
    /// it kept every declaration refused after it waiting for the connection's life, with room free.
    private func canEverFit(
        _ declaration: SeriesDeclaration, shownName: String, of client: borrowing ClientState
    ) -> Bool {
        let bytes = Self.chargedBytes(
            name: shownName, labelText: Escaping.labelText(declaration.labels).count,
            connectionLabels: client.labelText.count,
            bounds: declaration.type == .histogram ? declaration.bounds.count : nil)
        return bytes <= limits.maxLabelBytesPerClient && bytes + client.connectionBytes <= limits.maxLabelBytes
    }

    /// Waiting declarations a try admits at most: about what one declare frame holds, so that a long
    /// backlog does not hold the lock for long. The rest are admitted, in order, at the next frame of
    /// any connection or the next tick.
    static let pendingRetryBatch = 1_024

    /// Gives room freed since the last try to the waiting declarations, oldest first over all
    /// connections: run before and after a frame, and at the tick, whenever a series went (or may be
    /// made to: a client gone into its grace period) since. It goes through the connections in the
    /// order of their oldest waiting declaration, admitting each connection's in the order refused, and
    /// stops at the first one refused at a limit every declaration needs room under (the daemon's
    /// series cap, all connections' bytes): room freed later is kept for it, ahead of any other. One
    /// refused at its own connection's limit or its uid's sets its connection aside (`queueOrPark`) and
    /// the try goes on; the try of a connection set aside resumes once a series of that connection or
    /// uid goes. So a try costs one failed check, the connections whose limit freed, and what it admits.
    /// One refused now for what other series hold is not counted again: dropped for good when its name
    /// and labels are under a second id of the connection, kept until that family goes when it is in
    /// conflict with one (`keepConflicted`, tried again at the tick once that family went).
    ///
    /// Runs only with every connection in `State.clients`.
    func admitWaiting(_ state: inout State) {
        state.waitRetryForced = false
        state.waitBlocked = nil
        queueRequeued(&state)
        // Stale tickets (their declaration admitted, retired or closed) are dropped at the top, or all
        // at once when they outnumber the connections, so a client retiring its oldest waiting
        // declaration in a loop leaves no trail.
        if state.waitQueue.count > 2 * state.clients.count + 64 {
            state.waitQueue.compact { ticket in
                guard let slot = state.clients.index(forKey: ticket.connection),
                    state.clients.values[slot].waiting == .queued
                else { return false }
                return state.clients.values[slot].waitingHead()?.stamp == ticket.stamp
            }
        }
        var admitted = 0
        // Admitting may evict a client held for its grace period, freeing room under its uid's cap.
        trying: while !state.requeue.isEmpty || !state.freedUIDs.isEmpty || !state.waitQueue.isEmpty {
            queueRequeued(&state)
            guard let ticket = state.waitQueue.top else { break }
            guard let slot = state.clients.index(forKey: ticket.connection),
                state.clients.values[slot].waiting == .queued,
                let head = state.clients.values[slot].waitingHead(), head.stamp == ticket.stamp
            else {
                state.waitQueue.pop()
                continue
            }
            if admitted == Self.pendingRetryBatch {
                state.waitRetryForced = true
                break
            }
            // Out of the dictionary while it changes, so that its tables are not copied.
            var client = state.clients.remove(at: slot).value
            let declaration = client.pending[head.id]!.declaration
            state.waitTries &+= 1
            switch admit(declaration, in: &client, state: &state) {
            case .success:
                admitted += 1
                state.pendingBytes -= client.removePending(head.id)
            case .failure(let reason) where reason.canWait:
                client.pending[head.id]?.reason = reason
                state.waitQueue.pop()
                let blocksAll = queueOrPark(
                    &client, after: reason, declaration: declaration, stamp: head.stamp, state: &state)
                // Set aside at its own limit: the place under its uid's cap it may have been queued
                // again for (`queueRequeued`) goes to the next of the uid set aside.
                if client.waiting == .parkedOnOwn { Self.uidFreed(client.peer.uid, in: &state) }
                state.clients[ticket.connection] = client
                if blocksAll {
                    state.waitBlocked = reason
                    break trying
                }
                continue
            case .failure(let reason):
                state.pendingBytes -= client.removePending(head.id)
                Self.uidFreed(client.peer.uid, in: &state)
                if client.droppedIDs < limits.maxSeriesPerClient {
                    client.indexByID[head.id] = ClientState.droppedID
                    client.droppedIDs += 1
                } else {
                    client.indexByID[head.id] = nil
                }
                if reason == .conflict { keepConflicted(declaration, stamp: head.stamp, of: &client, in: &state) }
            }
            state.waitQueue.pop()
            if let next = client.waitingHead() {
                state.waitQueue.push(stamp: next.stamp, connection: ticket.connection)
            } else {
                client.waiting = .idle
            }
            state.clients[ticket.connection] = client
        }
        // Admitting may have evicted clients held for their grace period: what that freed was tried, or
        // is queued to be.
        queueRequeued(&state)
        state.waitCheckedAt = state.seriesFreed
    }

    /// Puts the connections whose limit freed since they were set aside back in the order, under the
    /// stamp of their oldest waiting declaration. Of those set aside at a uid's cap, only the oldest, as
    /// many as the uid has room for (one at least, as room may be held by clients in their grace
    /// period): queueing all of them, each time a series of the uid went, cost a try of every one (all
    /// but the first refused at the cap again), 4,000 of them for each retire of a client of the uid.
    private func queueRequeued(_ state: inout State) {
        for uid in state.freedUIDs {
            guard var parked = state.parkedByUID.removeValue(forKey: uid) else { continue }
            parked.freed = false
            let used = state.usageByUID[uid]?.series ?? 0
            var room = max(1, limits.maxSeriesPerUID - used)
            while room > 0, let ticket = parked.queue.top {
                parked.queue.pop()
                guard let slot = state.clients.index(forKey: ticket.connection),
                    state.clients.values[slot].waiting == .parkedOnUID,
                    state.clients.values[slot].waitingHead()?.stamp == ticket.stamp
                else { continue }
                state.clients.values[slot].waiting = .queued
                state.waitQueue.push(stamp: ticket.stamp, connection: ticket.connection)
                parked.count -= 1
                room -= 1
            }
            if parked.count > 0 {
                // Tickets of connections no longer set aside (closed, retired) are dropped here, if not
                // at the top, so a uid's queue stays within twice the connections set aside.
                state.parkedByUID[uid] = parked
                if parked.queue.count > 2 * parked.count + 64 { Self.compactParked(uid, keeping: nil, in: &state) }
            }
        }
        state.freedUIDs.removeAll(keepingCapacity: state.freedUIDs.count <= 64)
        guard !state.requeue.isEmpty else { return }
        for connection in state.requeue {
            guard let slot = state.clients.index(forKey: connection) else { continue }
            guard state.clients.values[slot].waiting == .requeued else { continue }
            state.clients.values[slot].waiting = .queued
            if let head = state.clients.values[slot].waitingHead() {
                state.waitQueue.push(stamp: head.stamp, connection: connection)
            }
        }
        state.requeue.removeAll(keepingCapacity: state.requeue.count <= 64)
    }

    /// Forgets a waiting declaration of `id` that goes without being admitted (retired). The next one of
    /// its connection takes its place in the order; a try is due, as it may have been what held the
    /// others back.
    static func forgetPending(_ id: UInt32, of client: inout ClientState, in state: inout State) {
        let wasHead = client.waitingHead()?.id == id
        state.pendingBytes -= client.removePending(id)
        state.waitRetryForced = true
        if client.pending.isEmpty {
            unpark(&client, in: &state)
        } else if wasHead, client.waiting == .queued, let next = client.waitingHead() {
            state.waitQueue.push(stamp: next.stamp, connection: client.connection)
        } else if wasHead, client.waiting == .parkedOnOwn {
            // Set aside by what the retired one needed of the connection's own bytes: the next may
            // need less. (At the connection's series cap it is only set aside again at its try.)
            client.waiting = .requeued
            state.requeue.append(client.connection)
        }
    }

    /// Takes a connection out of the waiting ones' order: its tickets go stale, and it leaves its uid's
    /// connections set aside.
    private static func unpark(_ client: inout ClientState, in state: inout State) {
        let uid = client.peer.uid
        if client.waiting == .parkedOnUID {
            // Its ticket goes stale in the uid's queue, dropped when met or compacted.
            state.parkedByUID[uid]?.count -= 1
            if state.parkedByUID[uid]?.count == 0 { state.parkedByUID[uid] = nil }
        } else if client.waiting == .queued {
            // It may have been queued again for a place under its uid's cap that it now leaves free.
            uidFreed(uid, in: &state)
        }
        client.waiting = .idle
    }

    /// Forgets the waiting declarations of a connection that closed (or was taken over): it can report
    /// nothing more.
    static func dropPending(of client: inout ClientState, in state: inout State) {
        guard !client.pending.isEmpty || client.waiting != .idle else { return }
        state.pendingBytes -= client.pendingBytes
        client.pending = [:]
        client.pendingOrder = []
        client.pendingHead = 0
        client.pendingBytes = 0
        unpark(&client, in: &state)
        state.waitRetryForced = true
    }

    /// Drops the stale tickets of a uid's connections set aside: those of connections no longer set
    /// aside at its cap, or under another stamp. `keeping` is one just set aside, out of `State.clients`.
    private static func compactParked(_ uid: UInt32, keeping current: ConnectionID?, in state: inout State) {
        guard var parked = state.parkedByUID.removeValue(forKey: uid) else { return }
        parked.queue.compact { ticket in
            if ticket.connection == current { return true }
            guard let slot = state.clients.index(forKey: ticket.connection) else { return false }
            return state.clients.values[slot].waiting == .parkedOnUID
                && state.clients.values[slot].waitingHead()?.stamp == ticket.stamp
        }
        state.parkedByUID[uid] = parked
    }

    /// A series of `uid` went: its oldest connections set aside at the uid's cap are tried again
    /// (`queueRequeued`). Only marked here, once: the uid's entry stays until they are queued, so that
    /// a new declaration of the uid meanwhile still waits behind them.
    static func uidFreed(_ uid: UInt32, in state: inout State) {
        guard state.parkedByUID[uid]?.freed == false else { return }
        state.parkedByUID[uid]?.freed = true
        state.freedUIDs.append(uid)
    }
}
