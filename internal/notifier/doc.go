// Package notifier wakes the sync engine when a node has news.
//
// Capture triggers on a node send NOTIFY on channel [Channel]
// ("tandem_changes") with the changed table ("schema.table") as payload; see
// package capture for why a burst of commits costs a single NOTIFY. A
// [Notifier] holds one dedicated connection per node that does nothing but
// LISTEN on that channel, and turns what it hears into [Wake] values on
// [Notifier.C].
//
// # A hint, not the truth
//
// NOTIFY only says "look now". The change queue and the cursors are the
// truth, and the engine also polls on each sync's interval, so a lost
// notification costs latency, never data. The notifier leans on that:
//
//   - Wakes are debounced on the trailing edge only. The first notification
//     after a quiet spell is sent at once (an isolated change waits for
//     nothing); notifications within [Notifier.Debounce] (5ms by default) of
//     a wake are gathered and sent as one Wake naming every node and table
//     heard from when the period ends, so a burst of commits makes one run
//     per period, not one run per commit.
//   - A slow consumer never stalls the listeners. C has room for one Wake;
//     when that Wake has not been taken yet, the next is merged into it.
//   - A lost connection is re-established with jittered exponential backoff
//     (between [Notifier.MinBackoff] and [Notifier.MaxBackoff]) and LISTENs
//     again. Notifications sent while it was down are gone, so once it
//     listens again the notifier sends a Wake with Reconnected set for that
//     node: the engine must poll it.
//   - Wakes gathered but not yet sent when the notifier stops are dropped.
//
// # Lifecycle
//
// [Notifier.Start] connects and LISTENs on every node and returns once all
// of them listen, or with the first error (naming the node, never the
// password). The notifier then runs until [Notifier.Stop] or until the
// context given to Start is cancelled. Stop waits for every goroutine to end
// and every connection to close; C is never written after Stop returns, and
// it is not closed either, so a consumer selects on its own context as well.
// A Notifier is started once.
package notifier
