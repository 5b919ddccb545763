//! Transactions (MULTI EXEC DISCARD WATCH UNWATCH) and Pub/Sub on a single connection,
//! compared byte for byte against redis-server 7.0. Scenarios that need several clients
//! (WATCH broken by another client, messages across connections, slow subscribers) live in
//! tests/python/test_tx_pubsub.py.
//!
//! Run against redis-server itself (`SHOAL_DIFF_TARGET=reference`) every case must pass.

use shoal_tests::diff::{c, diff_resp, Cmp, RespCase};
use shoal_tests::resp::encode_command;

/// A command (split on spaces) that produces `n` replies (SUBSCRIBE a b c: one per channel).
fn cn(cmdline: &str, n: usize) -> RespCase {
    let args: Vec<&str> = cmdline.split(' ').filter(|s| !s.is_empty()).collect();
    let mut case = RespCase::raw(encode_command(&args), n);
    case.label = format!("{cmdline} (x{n} replies)");
    case
}

#[test]
fn multi_exec_basics() {
    diff_resp(
        "multi_exec_basics",
        &[
            c("FLUSHALL"),
            c("EXEC"),
            c("DISCARD"),
            c("MULTI"),
            c("SET k 1"),
            c("INCR k"),
            c("GET k"),
            c("EXEC"),
            c("GET k"),
            // Empty transaction.
            c("MULTI"),
            c("EXEC"),
            c("EXEC"),
            // DISCARD drops the queue.
            c("MULTI"),
            c("INCR k"),
            c("DISCARD"),
            c("GET k"),
            c("DISCARD"),
            // Nested MULTI is an error but does not abort.
            c("MULTI"),
            c("MULTI"),
            c("INCR k"),
            c("EXEC"),
            // Arity errors for the commands themselves.
            c("MULTI extra"),
            // Redis rejects EXEC itself with EXECABORT (and discards the transaction).
            c("EXEC extra"),
            c("DISCARD"),
            c("DISCARD extra"),
            c("UNWATCH extra"),
            c("WATCH"),
            c("multi"),
            c("exec"),
            // Lowercase and mixed case.
            c("MuLtI"),
            c("sEt k2 v"),
            c("ExEc"),
        ],
    );
}

#[test]
fn exec_errors() {
    diff_resp(
        "exec_errors",
        &[
            c("FLUSHALL"),
            c("SET s str"),
            // Runtime errors are per-command replies; the rest still runs.
            c("MULTI"),
            c("INCR n"),
            c("LPUSH s x"),
            c("INCR s"),
            c("INCR n"),
            c("SET t v EX 0"),
            c("GET n"),
            c("EXEC"),
            c("GET n"),
            // Rejected while queueing: EXECABORT and nothing runs.
            c("MULTI"),
            c("INCR n"),
            c("INCR"),
            c("INCR n"),
            c("EXEC"),
            c("GET n"),
            c("EXEC"),
            c("MULTI"),
            c("NOSUCHCOMMAND a b"),
            c("EXEC"),
            // DISCARD after a rejected command clears the abort state.
            c("MULTI"),
            c("GET"),
            c("DISCARD"),
            c("MULTI"),
            c("INCR n"),
            c("EXEC"),
            // WATCH inside MULTI is an error but does not abort.
            c("MULTI"),
            c("WATCH n"),
            c("INCR n"),
            c("EXEC"),
            // Errors in the middle of a reply list, and nested replies.
            c("MULTI"),
            c("MGET n s missing"),
            c("PING"),
            c("ECHO hi"),
            c("GETRANGE"),
            c("EXEC"),
        ],
    );
}

#[test]
fn watch_single_connection() {
    diff_resp(
        "watch_single_connection",
        &[
            c("FLUSHALL"),
            c("SET k 1"),
            // Untouched watched key: EXEC runs.
            c("WATCH k"),
            c("MULTI"),
            c("INCR k"),
            c("EXEC"),
            // Our own write between WATCH and MULTI dirties it.
            c("WATCH k"),
            c("SET k 10"),
            c("MULTI"),
            c("INCR k"),
            c("EXEC"),
            c("GET k"),
            // EXEC unwatches: the next transaction is clean.
            c("MULTI"),
            c("INCR k"),
            c("EXEC"),
            // Writes inside the transaction do not abort it.
            c("WATCH k"),
            c("MULTI"),
            c("INCR k"),
            c("INCR k"),
            c("EXEC"),
            // UNWATCH forgets.
            c("WATCH k"),
            c("SET k 1"),
            c("UNWATCH"),
            c("MULTI"),
            c("GET k"),
            c("EXEC"),
            // DISCARD unwatches too.
            c("WATCH k"),
            c("SET k 2"),
            c("MULTI"),
            c("DISCARD"),
            c("MULTI"),
            c("GET k"),
            c("EXEC"),
            // Several keys, one of them missing; a write creating the missing one.
            c("WATCH k missing k"),
            c("SET missing now"),
            c("MULTI"),
            c("GET missing"),
            c("EXEC"),
            // Deleting, expiring and renaming watched keys.
            c("WATCH k"),
            c("DEL k"),
            c("MULTI"),
            c("EXEC"),
            c("SET k v"),
            c("WATCH k"),
            c("EXPIRE k 100"),
            c("MULTI"),
            c("EXEC"),
            c("WATCH k"),
            c("RENAME k k2"),
            c("MULTI"),
            c("EXEC"),
            // A no-op write (DEL of a missing key) does not dirty.
            c("WATCH nothing"),
            c("DEL nothing"),
            c("MULTI"),
            c("EXEC"),
            // WATCH of an existing key, then FLUSHALL: aborted.
            c("SET f 1"),
            c("WATCH f"),
            c("FLUSHALL"),
            c("MULTI"),
            c("EXEC"),
            // EXECABORT wins over a dirty WATCH.
            c("SET k 1"),
            c("WATCH k"),
            c("SET k 2"),
            c("MULTI"),
            c("NOSUCH"),
            c("EXEC"),
            c("UNWATCH"),
            c("UNWATCH"),
        ],
    );
}

#[test]
fn watch_and_expiry() {
    diff_resp(
        "watch_and_expiry",
        &[
            c("FLUSHALL"),
            // Expires between WATCH and EXEC (nobody touches it): aborted.
            c("SET e v PX 100"),
            c("WATCH e"),
            RespCase::sleep(250),
            c("MULTI"),
            c("GET e"),
            c("EXEC"),
            // Already expired when WATCHed: not a change, EXEC runs.
            c("SET e2 v PX 50"),
            RespCase::sleep(150),
            c("WATCH e2"),
            c("MULTI"),
            c("GET e2"),
            c("EXEC"),
            // A key with a far TTL is fine.
            c("SET e3 v EX 1000"),
            c("WATCH e3"),
            c("MULTI"),
            c("TTL e3"),
            c("EXEC").within(1),
        ],
    );
}

#[test]
fn transactions_resp3() {
    diff_resp(
        "transactions_resp3",
        &[
            c("HELLO 3").with(Cmp::MapKeys),
            c("FLUSHALL"),
            c("SET k 1"),
            c("WATCH k"),
            c("SET k 2"),
            c("MULTI"),
            c("GET k"),
            c("EXEC"),
            c("MULTI"),
            c("HSET h a 1"),
            c("HGETALL h"),
            c("INCRBYFLOAT f 1.5"),
            c("GET nothing"),
            c("EXEC"),
            c("MULTI"),
            c("BADCMD"),
            c("EXEC"),
            c("EXEC"),
            c("DISCARD"),
        ],
    );
}

#[test]
fn reset_clears_transaction_state() {
    diff_resp(
        "reset_tx",
        &[
            c("FLUSHALL"),
            c("SET k 1"),
            c("WATCH k"),
            c("SET k 2"),
            c("MULTI"),
            c("INCR k"),
            c("RESET"),
            c("EXEC"),
            // The WATCH went with RESET.
            c("MULTI"),
            c("GET k"),
            c("EXEC"),
        ],
    );
}

#[test]
fn pubsub_single_connection() {
    diff_resp(
        "pubsub_single_connection",
        &[
            c("PUBSUB NUMPAT"),
            cn("UNSUBSCRIBE", 1),
            cn("PUNSUBSCRIBE", 1),
            c("PUBLISH nobody msg"),
            c("PUBSUB NUMSUB"),
            c("PUBSUB NUMSUB a b"),
            c("PUBSUB CHANNELS"),
            cn("SUBSCRIBE a b a", 3),
            c("PING"),
            c("PING hello"),
            c("PING a b"),
            c("GET a"),
            c("PUBLISH a x"),
            c("MULTI"),
            cn("UNSUBSCRIBE b nope", 2),
            cn("PSUBSCRIBE p* q?", 2),
            // Unsubscribing from all channels leaves the patterns.
            cn("UNSUBSCRIBE", 1),
            c("PING"),
            cn("PUNSUBSCRIBE q?", 1),
            cn("PUNSUBSCRIBE", 1),
            // Out of subscribed mode again.
            c("PING"),
            c("PUBSUB NUMPAT"),
            c("SUBSCRIBE"),
            c("PSUBSCRIBE"),
            c("PUBLISH a"),
            c("PUBLISH a b c"),
        ],
    );
}

#[test]
fn pubsub_command() {
    diff_resp(
        "pubsub_command",
        &[
            c("PUBSUB"),
            c("PUBSUB HELP"),
            c("pubsub help"),
            c("PUBSUB HELP extra"),
            c("PUBSUB foo"),
            c("PUBSUB NUMPAT extra"),
            c("PUBSUB CHANNELS a b"),
            c("PUBSUB channels a b"),
            c("PUBSUB SHARDCHANNELS"),
            c("PUBSUB SHARDCHANNELS a b"),
            c("PUBSUB SHARDNUMSUB a b"),
            c("PUBSUB NUMSUB"),
            // Our own subscriptions, seen through PUBSUB from RESP3 (allowed while subscribed).
            c("HELLO 3").with(Cmp::MapKeys),
            cn("SUBSCRIBE news.1 news.2 other", 3),
            cn("PSUBSCRIBE news.* news.*", 2),
            c("PUBSUB CHANNELS").unordered(),
            c("PUBSUB CHANNELS news.*").unordered(),
            c("PUBSUB CHANNELS nomatch*"),
            c("PUBSUB NUMSUB news.1 other none"),
            c("PUBSUB NUMPAT"),
            c("RESET"),
            c("PUBSUB NUMSUB news.1"),
            c("PUBSUB NUMPAT"),
            c("PUBSUB CHANNELS"),
        ],
    );
}

#[test]
fn pubsub_resp3_self_publish() {
    diff_resp(
        "pubsub_resp3",
        &[
            c("HELLO 3").with(Cmp::MapKeys),
            cn("UNSUBSCRIBE", 1),
            cn("SUBSCRIBE ch", 1),
            // RESP3 clients may run any command while subscribed.
            c("SET k v"),
            c("GET k"),
            c("PING"),
            // Messages to ourselves arrive ahead of the PUBLISH reply.
            cn("PUBLISH ch hello", 2),
            cn("PSUBSCRIBE c*", 1),
            cn("PUBLISH ch both", 3),
            cn("PUBLISH cx pattern-only", 2),
            c("PUBLISH zz none"),
            cn("UNSUBSCRIBE ch", 1),
            cn("PUNSUBSCRIBE c*", 1),
            c("PUBLISH ch gone"),
            // Subscribing inside a transaction.
            c("MULTI"),
            c("SUBSCRIBE t"),
            c("PUBLISH t m"),
            c("EXEC"),
            cn("UNSUBSCRIBE", 1),
            c("HELLO 2").with(Cmp::MapKeys),
        ],
    );
}

#[test]
fn pubsub_reset_and_quit() {
    diff_resp(
        "pubsub_reset",
        &[
            cn("SUBSCRIBE a", 1),
            cn("PSUBSCRIBE b*", 1),
            c("SET k v"),
            c("RESET"),
            c("SET k v"),
            c("PUBSUB NUMPAT"),
            cn("SUBSCRIBE a", 1),
            c("QUIT").closes(),
            c("PUBSUB NUMSUB a"),
        ],
    );
}
