//! `poolpipe bench transport`: one JSON object with a row per size, and clear errors.

mod common;

use common::poolpipe;

#[test]
fn bench_transport_prints_one_json_object_with_every_leg() {
    let out = poolpipe(&["bench", "transport", "--sizes", "64K,1M", "--mib", "4", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    let sizes = v["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 2);
    assert_eq!(sizes[0]["bytes"], 65536);
    assert_eq!(sizes[1]["bytes"], 1 << 20);
    for s in sizes {
        for k in ["quic_mb_s", "tls_tcp_mb_s", "tcp_mb_s", "ratio", "quic_p50_us", "quic_p99_us"] {
            let x = s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s}"));
            assert!(x.is_finite() && x > 0.0, "{k} = {x}");
        }
        let ratio = s["quic_mb_s"].as_f64().unwrap() / s["tls_tcp_mb_s"].as_f64().unwrap();
        assert!((ratio - s["ratio"].as_f64().unwrap()).abs() < 1e-9);
        assert!(s["quic_p99_us"].as_f64().unwrap() >= s["quic_p50_us"].as_f64().unwrap());
    }
    assert!(v["quic_lost_packets"].as_u64().is_some());
}

#[test]
fn bench_transport_refuses_bad_options() {
    let fail = |args: &[&str], expect: &str| {
        let out = poolpipe(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(expect), "{args:?}: {err}");
    };
    fail(&["bench", "transport", "--sizes", "1G"], "unknown unit");
    fail(&["bench", "transport", "--sizes", "65535"], "even byte counts");
    fail(&["bench", "transport", "--max-udp-payload", "100"], "max_udp_payload");
    fail(&["bench", "transport", "--in-flight", "0"], "max_in_flight");
    fail(&["bench", "transport", "--mib", "0"], "--mib");
}
