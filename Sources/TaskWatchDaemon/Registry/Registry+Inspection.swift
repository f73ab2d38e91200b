import Synchronization
import TaskWatchWire

/// What tests read of the registry's state: nothing here is used by the daemon itself.
extension Registry {
    /// Uids with an entry in the per-uid usage: for tests that nothing is left behind.
    var trackedUIDCount: Int { state.withLock { $0.usageByUID.count } }

    /// What waiting declarations hold, all connections together: for tests that nothing is left behind.
    var pendingBytes: Int { state.withLock { $0.pendingBytes } }

    /// What declarations kept after a conflict hold, all connections together, and the names they are
    /// indexed under: for tests that nothing is left behind.
    var conflicted: (bytes: Int, names: Int) { state.withLock { ($0.conflictedBytes, $0.conflictWaiters.count) } }

    /// Declarations kept after a conflict tried again so far, and the entries of the queue of those due:
    /// for tests that the work and the queue stay bounded.
    var conflictRetries: (tries: Int, queued: Int) {
        state.withLock { ($0.conflictTries, $0.conflictQueue.count - $0.conflictQueueHead) }
    }

    /// Entries in every connection's queue of waiting declarations, stale ones included: for tests that
    /// the queue stays bounded.
    var pendingQueueEntries: Int { state.withLock { $0.clients.values.reduce(0) { $0 + $1.pendingOrder.count } } }

    /// Tickets in the order of waiting connections, stale ones included, and uids with connections set
    /// aside at their cap: for tests that both stay bounded and nothing is left behind.
    var waitQueueTickets: Int { state.withLock { $0.waitQueue.count } }
    var parkedUIDCount: Int { state.withLock { $0.parkedByUID.count } }
    var waitTries: UInt64 { state.withLock { $0.waitTries } }
    var parkedUIDTickets: Int { state.withLock { $0.parkedByUID.values.reduce(0) { $0 + $1.queue.count } } }

    /// What does not hold among the counts and indexes of declarations kept after a conflict and of
    /// waiting ones: for tests, empty when all is well.
    var conflictInvariantViolations: [String] {
        state.withLock { state in
            var problems: [String] = []
            var count = 0
            var bytes = 0
            var pendingBytes = 0
            for (connection, client) in state.clients {
                let marked = client.indexByID.count(of: ClientState.droppedID)
                if marked != client.droppedIDs {
                    problems.append("\(connection): droppedIDs \(client.droppedIDs), marked \(marked)")
                }
                if client.droppedIDs < 0 || client.droppedIDs > limits.maxSeriesPerClient {
                    problems.append("\(connection): droppedIDs \(client.droppedIDs) out of bounds")
                }
                var own = 0
                for (id, kept) in client.conflicted {
                    let declaration = kept.declaration
                    own += PendingDeclaration.keptCost(of: declaration, names: Self.conflictNames(of: declaration))
                    if client.indexByID[id] != ClientState.droppedID {
                        problems.append("\(connection): kept \(id) not marked dropped")
                    }
                    let key = ConflictKey(connection: connection, id: id)
                    let names = Self.conflictNames(of: declaration)
                    let listed = names.filter { state.conflictWaiters[$0]?[connection]?[id] == kept.stamp }
                    let due =
                        state.conflictDue.contains(key)
                        && state.conflictQueue[state.conflictQueueHead...].contains(key)
                    if !due && listed.count != names.count {
                        problems.append("\(connection): kept \(id) neither due nor a waiter of all its names")
                    }
                    // A lost wake-up: not due, though no family it clashes with is left.
                    var families = state.families
                    let labelNames = declaration.labels.map(\.name).sorted()
                    let shown = declaration.type.exposedName(declaration.name)
                    if !due,
                        case .success = families.admit(
                            name: shown, type: declaration.type, labelNames: labelNames, help: "")
                    {
                        problems.append("\(connection): kept \(id) not due though it no longer clashes")
                    }
                }
                if own != client.conflictedBytes { problems.append("\(connection): conflictedBytes") }
                count += client.conflicted.count
                bytes += own
                pendingBytes += client.pending.values.reduce(0) { $0 + $1.cost }
                if client.pending.values.reduce(0, { $0 + $1.cost }) != client.pendingBytes {
                    problems.append("\(connection): pendingBytes")
                }
                for id in client.pending.keys where client.indexByID[id] != ClientState.pendingID {
                    problems.append("\(connection): waiting \(id) not marked waiting")
                }
                for id in client.pending.keys where client.conflicted[id] != nil {
                    problems.append("\(connection): \(id) both waiting and kept")
                }
            }
            if count != state.conflictedCount {
                problems.append("conflictedCount \(state.conflictedCount), held \(count)")
            }
            if bytes != state.conflictedBytes {
                problems.append("conflictedBytes \(state.conflictedBytes), held \(bytes)")
            }
            if pendingBytes != state.pendingBytes {
                problems.append("pendingBytes \(state.pendingBytes), held \(pendingBytes)")
            }
            for (name, waiters) in state.conflictWaiters {
                for (connection, ids) in waiters {
                    if ids.isEmpty { problems.append("\(name): empty waiters of \(connection)") }
                    for (id, stamp) in ids where state.clients[connection]?.conflicted[id]?.stamp != stamp {
                        problems.append("\(name): waiter \(connection)/\(id) not kept")
                    }
                }
            }
            return problems
        }
    }
}
