//! dkv as Redis clients see it: the `redis` crate (a client no one here wrote) against a real
//! 3-node cluster on loopback, through every command dkv supports, pipelining, MULTI/EXEC
//! atomic across nodes, a WATCH that loses a race, and AUTH where users are required.

mod common;

use common::{Mode, ProcessCluster};
use dkv_net::security::users::{hex, load_client_user};
use redis::{Commands, Connection, RedisResult, Value, cmd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn connect(cluster: &ProcessCluster, node: usize) -> Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", cluster.ports[node])).unwrap();
    let connection = client.get_connection_with_timeout(Duration::from_secs(10)).unwrap();
    connection.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    connection
}

fn error_text<T: std::fmt::Debug>(result: RedisResult<T>) -> String {
    match result {
        Ok(value) => panic!("expected an error reply, got {value:?}"),
        Err(error) => error.to_string(),
    }
}

/// Every supported command answers as Redis would, whichever node is asked, and a write at
/// one node is read at the others.
#[test]
fn every_supported_command_answers_as_redis_does() {
    let cluster = ProcessCluster::start(Mode::Tcp);
    let mut a = connect(&cluster, 0);
    let mut b = connect(&cluster, 1);

    let pong: String = cmd("PING").query(&mut a).unwrap();
    assert_eq!(pong, "PONG");
    let echoed: String = cmd("ECHO").arg("hi").query(&mut a).unwrap();
    assert_eq!(echoed, "hi");
    let () = cmd("SELECT").arg(0).query(&mut a).unwrap();
    assert!(error_text(cmd("SELECT").arg(1).query::<()>(&mut a)).contains("one database"));

    let () = a.set("k", "v1").unwrap();
    let read: String = b.get("k").unwrap();
    assert_eq!(read, "v1", "a write at node 0 is read at node 1");
    let missing: Option<String> = b.get("missing").unwrap();
    assert_eq!(missing, None);
    let set_nx: Option<String> = cmd("SET").arg("k").arg("x").arg("NX").query(&mut a).unwrap();
    assert_eq!(set_nx, None, "SET NX of an existing key sets nothing");
    let set_xx: Option<String> = cmd("SET").arg("new").arg("x").arg("XX").query(&mut a).unwrap();
    assert_eq!(set_xx, None, "SET XX of a missing key sets nothing");
    let previous: Option<String> = cmd("SET").arg("k").arg("v2").arg("GET").query(&mut a).unwrap();
    assert_eq!(previous.as_deref(), Some("v1"));
    assert_eq!(a.set_nx::<_, _, i64>("k", "x").unwrap(), 0);
    assert_eq!(a.set_nx::<_, _, i64>("fresh", "x").unwrap(), 1);
    let old: String = a.getset("k", "v3").unwrap();
    assert_eq!(old, "v2");
    let taken: String = a.get_del("fresh").unwrap();
    assert_eq!(taken, "x");
    assert_eq!(b.exists::<_, i64>("fresh").unwrap(), 0);

    let () = a.mset(&[("m1", "1"), ("m2", "2")]).unwrap();
    let values: Vec<Option<String>> = b.mget(&["m1", "nope", "m2"]).unwrap();
    assert_eq!(values, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(a.mset_nx::<_, _, i64>(&[("m1", "x"), ("m3", "x")]).unwrap(), 0);
    assert_eq!(b.exists::<_, i64>("m3").unwrap(), 0, "MSETNX set nothing when one key existed");
    assert_eq!(a.mset_nx::<_, _, i64>(&[("m3", "3"), ("m4", "4")]).unwrap(), 1);
    assert_eq!(cmd("EXISTS").arg("m1").arg("m3").arg("nope").arg("m1").query::<i64>(&mut b).unwrap(), 3);
    assert_eq!(a.del::<_, i64>(&["m3", "m4", "nope"]).unwrap(), 2);
    assert_eq!(cmd("UNLINK").arg("m1").query::<i64>(&mut a).unwrap(), 1);

    assert_eq!(a.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(a.incr::<_, _, i64>("n", 41).unwrap(), 42);
    assert_eq!(cmd("DECR").arg("n").query::<i64>(&mut b).unwrap(), 41);
    assert_eq!(a.decr::<_, _, i64>("n", 50).unwrap(), -9);
    assert_eq!(error_text(a.incr::<_, _, i64>("k", 1)), "ResponseError: value is not an integer or out of range");
    let () = a.set("big", i64::MAX.to_string()).unwrap();
    assert!(error_text(a.incr::<_, _, i64>("big", 1)).contains("overflow"));
    assert_eq!(a.append::<_, _, i64>("k", "+").unwrap(), 3);
    assert_eq!(a.strlen::<_, i64>("k").unwrap(), 3);
    assert_eq!(b.strlen::<_, i64>("nope").unwrap(), 0);

    let dbsize: i64 = cmd("DBSIZE").query(&mut b).unwrap();
    assert_eq!(dbsize, 4, "k, m2, n and big, counted on the node asked");
    let info: String = cmd("INFO").query(&mut a).unwrap();
    assert!(info.contains("redis_version:") && info.contains("dkv_node_id:0"), "{info}");
    let count: i64 = cmd("COMMAND").arg("COUNT").query(&mut a).unwrap();
    assert!(count > 30);

    assert!(error_text(cmd("SET").arg("k").arg("v").arg("EX").arg(10).query::<()>(&mut a)).contains("no expiry"));
    let unknown = error_text(cmd("FLUSHALL").query::<()>(&mut a));
    assert!(unknown.contains("unknown command 'FLUSHALL', dkv does not support it"), "{unknown}");
    let still: String = a.get("k").unwrap();
    assert_eq!(still, "v3+", "the connection still works after errors");

    // RESP3, as a client that says HELLO 3 speaks it: nulls, and maps.
    let url = format!("redis://127.0.0.1:{}/?protocol=resp3", cluster.ports[2]);
    let mut resp3 = redis::Client::open(url).unwrap().get_connection().unwrap();
    let hello: Value = cmd("HELLO").arg(3).query(&mut resp3).unwrap();
    assert!(matches!(&hello, Value::Map(pairs) if pairs.len() == 7), "{hello:?}");
    assert_eq!(cmd("GET").arg("missing").query::<Value>(&mut resp3).unwrap(), Value::Nil);
    let read: String = resp3.get("k").unwrap();
    assert_eq!(read, "v3+");
}

/// SCAN visits every key once through its cursors (MATCH filters at the node), and KEYS
/// answers a pattern; both from any node.
#[test]
fn scan_and_keys_list_keys() {
    let cluster = ProcessCluster::start(Mode::Tcp);
    let mut a = connect(&cluster, 0);
    let mut b = connect(&cluster, 2);
    let users: Vec<(String, String)> = (0..60).map(|i| (format!("user:{i:03}"), "x".to_string())).collect();
    let () = a.mset(&users).unwrap();
    let () = a.mset(&[("item:1", "y"), ("item:2", "y")]).unwrap();
    let mut seen: Vec<String> = b.scan_match::<_, String>("user:*").unwrap().collect::<RedisResult<_>>().unwrap();
    seen.sort();
    let expected: Vec<String> = users.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(seen, expected);
    let mut everything: Vec<String> = b.scan::<String>().unwrap().collect::<RedisResult<_>>().unwrap();
    everything.sort();
    assert_eq!(everything.len(), 62);
    let mut items: Vec<String> = b.keys("item:*").unwrap();
    items.sort();
    assert_eq!(items, vec!["item:1", "item:2"]);
}

/// Pipelined commands on one connection all get their replies, in order, including ones that
/// fail in the middle.
#[test]
fn pipelining_answers_in_order() {
    let cluster = ProcessCluster::start(Mode::Tcp);
    let mut a = connect(&cluster, 0);
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.set(format!("p{i}"), i).incr("counter", 1);
    }
    pipe.set("text", "abc").incr("text", 1).get("p7").get("counter");
    let results: Vec<RedisResult<Value>> = pipe.ignore_errors().query(&mut a).unwrap();
    // The pipeline holds an error reply in the middle; the rest still answer, in order.
    assert_eq!(results.len(), 204, "{results:?}");
    for i in 0..100 {
        assert_eq!(results[2 * i].as_ref().unwrap(), &Value::Okay);
        assert_eq!(results[2 * i + 1].as_ref().unwrap(), &Value::Int(i as i64 + 1));
    }
    assert_eq!(results[200].as_ref().unwrap(), &Value::Okay);
    let error = results[201].as_ref().unwrap_err().to_string();
    assert!(error.contains("not an integer"), "{error}");
    assert_eq!(results[202].as_ref().unwrap(), &Value::BulkString(b"7".to_vec()));
    assert_eq!(results[203].as_ref().unwrap(), &Value::BulkString(b"100".to_vec()));
    // Replies answered at once past the node's per-call output threshold (16 KiB of CLIENT
    // GETNAMEs asking for 4 MiB) still all come, in turns.
    let name = "n".repeat(4096);
    let () = cmd("CLIENT").arg("SETNAME").arg(&name).query(&mut a).unwrap();
    let mut names = redis::pipe();
    for _ in 0..1000 {
        names.cmd("CLIENT").arg("GETNAME");
    }
    let named: Vec<String> = names.query(&mut a).unwrap();
    assert_eq!(named.len(), 1000);
    assert!(named.iter().all(|n| *n == name));
}

/// MULTI/EXEC is one transaction across the cluster: a reader at another node never sees part
/// of one, and a WATCH that loses a race makes EXEC apply nothing.
#[test]
fn multi_exec_is_atomic_across_nodes_and_watch_loses_races() {
    let cluster = ProcessCluster::start(Mode::Tcp);
    let mut writer = connect(&cluster, 0);
    let mut reader = connect(&cluster, 1);
    let rounds = 50;
    let deadline = Instant::now() + Duration::from_secs(60);
    // How many reads the reader has finished; the writer waits for one more after each of its
    // transactions, so that reads and writes interleave throughout.
    let reads = Arc::new(AtomicU64::new(0));
    let reading = {
        let port = cluster.ports[2];
        let reads = reads.clone();
        std::thread::spawn(move || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut con = client.get_connection().unwrap();
            loop {
                let Ok((a, b)) =
                    redis::pipe().atomic().get("left").get("right").query::<(Option<i64>, Option<i64>)>(&mut con)
                else {
                    // TRYAGAIN (see below): nothing was read; read again.
                    assert!(Instant::now() < deadline, "the reader got no answer in time");
                    continue;
                };
                assert_eq!(a, b, "a transaction was seen half applied");
                reads.fetch_add(1, Ordering::SeqCst);
                if a == Some(rounds) || Instant::now() > deadline {
                    return;
                }
            }
        })
    };
    for i in 1..=rounds {
        let before = reads.load(Ordering::SeqCst);
        // A MULTI's reads lock their keys like its writes (it is one dkv transaction), so the
        // writer and the reader contend for "left" and "right": dkv answers an EXEC that lost
        // that contention too often "-TRYAGAIN …, nothing was applied", which the redis crate
        // reports as an unexpected return type. A client retries it, as this one does.
        let mut tries = 0;
        while let Err(error) =
            redis::pipe().atomic().set("left", i).set("right", i).ignore().ignore().query::<()>(&mut writer)
        {
            tries += 1;
            assert!(tries < 100 && Instant::now() < deadline, "round {i}: {error}");
        }
        while reads.load(Ordering::SeqCst) <= before && !reading.is_finished() {
            assert!(Instant::now() < deadline, "the reader stopped reading");
            std::thread::yield_now();
        }
    }
    reading.join().expect("the reader saw every transaction whole");

    // The race: the watcher reads, someone else writes, the watcher's EXEC applies nothing.
    let () = writer.set("balance", 10).unwrap();
    let () = cmd("WATCH").arg("balance").query(&mut writer).unwrap();
    let seen: i64 = writer.get("balance").unwrap();
    let () = reader.set("balance", 99).unwrap();
    let () = cmd("MULTI").query(&mut writer).unwrap();
    let queued: String = cmd("SET").arg("balance").arg(seen - 1).query(&mut writer).unwrap();
    assert_eq!(queued, "QUEUED");
    let exec: Option<Vec<Value>> = cmd("EXEC").query(&mut writer).unwrap();
    assert_eq!(exec, None, "EXEC after a lost WATCH is a null array");
    let balance: i64 = reader.get("balance").unwrap();
    assert_eq!(balance, 99);
    // Without interference it applies.
    let () = cmd("WATCH").arg("balance").query(&mut writer).unwrap();
    let () = cmd("MULTI").query(&mut writer).unwrap();
    let _: String = cmd("INCR").arg("balance").query(&mut writer).unwrap();
    let exec: Option<Vec<i64>> = cmd("EXEC").query(&mut writer).unwrap();
    assert_eq!(exec, Some(vec![100]));
}

/// Where users are required, nothing runs before AUTH; AUTH takes the user's token (hex) over
/// loopback; a read-only user cannot write.
#[test]
fn auth_takes_dkv_users() {
    let cluster = ProcessCluster::start_requiring_users(Mode::Tcp);
    let mut anonymous = connect(&cluster, 0);
    let refused = error_text(anonymous.get::<_, Option<String>>("k"));
    assert!(refused.contains("NOAUTH"), "{refused}");
    let admin = load_client_user(&cluster.client_credentials().join("admin.user")).unwrap();
    let url = format!("redis://admin:{}@127.0.0.1:{}/", hex(&admin.token), cluster.ports[0]);
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let () = con.set("k", "v").unwrap();
    let read: String = con.get("k").unwrap();
    assert_eq!(read, "v");
    let wrong = format!("redis://admin:{}@127.0.0.1:{}/", "00".repeat(32), cluster.ports[0]);
    assert!(redis::Client::open(wrong).unwrap().get_connection().is_err());
    let viewer = load_client_user(&cluster.client_credentials().join("viewer.user")).unwrap();
    let url = format!("redis://viewer:{}@127.0.0.1:{}/", hex(&viewer.token), cluster.ports[1]);
    let mut reader = redis::Client::open(url).unwrap().get_connection().unwrap();
    let read: String = reader.get("k").unwrap();
    assert_eq!(read, "v");
    let denied = error_text(reader.set::<_, _, ()>("k", "w"));
    assert!(denied.contains("may only read"), "{denied}");
}
