/// The connections whose oldest waiting declaration may fit once room frees, oldest stamp first: the
/// one order over all connections that freed room is given in (`Registry.admitWaiting`).
///
/// A min-heap of tickets. A connection's ticket holds the stamp of its oldest waiting declaration when
/// pushed; a ticket whose stamp is no longer that (admitted, retired, closed) is stale, dropped when it
/// comes to the top, and all of them when they outnumber the connections (`compact`). A heap and not a
/// FIFO array: a connection set aside at its own limit comes back under its old stamp, ahead of newer.
struct WaitQueue {
    struct Ticket {
        let stamp: UInt64
        let connection: ConnectionID
    }

    private(set) var tickets: [Ticket] = []

    var isEmpty: Bool { tickets.isEmpty }
    var count: Int { tickets.count }
    var top: Ticket? { tickets.first }

    mutating func push(stamp: UInt64, connection: ConnectionID) {
        tickets.append(Ticket(stamp: stamp, connection: connection))
        var child = tickets.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard tickets[child].stamp < tickets[parent].stamp else { break }
            tickets.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !tickets.isEmpty else { return }
        tickets.swapAt(0, tickets.count - 1)
        tickets.removeLast()
        siftDown(from: 0)
    }

    /// Keeps only the tickets `isCurrent` accepts, once per connection, and rebuilds the heap in O(n).
    mutating func compact(keeping isCurrent: (Ticket) -> Bool) {
        var seen = Set<ConnectionID>()
        tickets = tickets.filter { isCurrent($0) && seen.insert($0.connection).inserted }
        for index in stride(from: tickets.count / 2 - 1, through: 0, by: -1) { siftDown(from: index) }
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < tickets.count else { return }
            var smallest = left
            if left + 1 < tickets.count && tickets[left + 1].stamp < tickets[left].stamp { smallest = left + 1 }
            guard tickets[smallest].stamp < tickets[parent].stamp else { return }
            tickets.swapAt(smallest, parent)
            parent = smallest
        }
    }
}

/// A uid's connections set aside at its cap (`Registry.State.parkedByUID`), oldest declaration first,
/// so that room freed under the cap goes back to as many of them as it fits, not to all.
struct ParkedUID {
    /// Their tickets; those of connections no longer set aside go stale, as in the daemon's order.
    var queue = WaitQueue()
    /// Connections of the uid set aside now: the entry goes when none is.
    var count = 0
    /// Whether the uid is listed in `Registry.State.freedUIDs`, to be queued again at the next try.
    var freed = false

    mutating func park(stamp: UInt64, connection: ConnectionID) {
        queue.push(stamp: stamp, connection: connection)
        count += 1
    }
}
