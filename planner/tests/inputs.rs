//! Planner inputs against the published profiles (`../shared/ppipe-data`) and the example
//! fleet and workload files of `configs/`.

use std::path::{Path, PathBuf};

use poolpipe_planner::{Fleet, PlannerError, SloSource, Workload, profiles};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/ppipe-data")
}

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("planner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("block-latency")).unwrap();
    std::fs::create_dir_all(d.join("cut-bytes")).unwrap();
    d
}

#[test]
fn every_example_fleet_and_workload_loads_with_its_published_profiles() {
    let load = |f: &str| Fleet::load(&configs().join(format!("fleets/{f}.toml"))).unwrap();
    let mut fleets: Vec<Fleet> = ["hc1", "hc2", "hc3", "hc4"].iter().map(|f| load(f)).collect();
    for f in &fleets {
        assert_eq!(f.class.iter().map(|c| c.count).sum::<u32>(), 100);
    }
    // The three- and four-class fleets.
    for (f, classes, gpus) in [("mc3", 3, 120), ("mc4", 4, 150), ("mc3-small", 3, 45), ("mc4-large", 4, 440)] {
        let fleet = load(f);
        assert_eq!((fleet.class.len(), fleet.class.iter().map(|c| c.count).sum::<u32>()), (classes, gpus), "{f}");
        fleets.push(fleet);
    }
    let slos = profiles::read_slos(&data()).unwrap();
    for g in 1..=6 {
        let w = Workload::load(&configs().join(format!("workloads/group{g}.toml"))).unwrap();
        assert_eq!(w.model.len(), 3);
        for f in &fleets {
            let p = profiles::load(&data(), &w.model_names(), &f.class_names()).unwrap();
            for m in &p {
                assert!(m.blocks == 9 || m.blocks == 10, "{}", m.name);
                // P4 has k = 1 only; the others 1..4 with 8, 4, 2, 2 batch columns.
                for c in f.class_names() {
                    let shares = m.shares(&c);
                    assert_eq!(shares, if c == "P4" { vec![1] } else { vec![1, 2, 3, 4] }, "{} {c}", m.name);
                    for k in shares {
                        assert_eq!(m.share(&c, k).unwrap().max_batch(), [8, 4, 2, 2][k - 1]);
                    }
                }
            }
            let s = w.slos_us(&p).unwrap();
            for (m, (us, src)) in w.model.iter().zip(&s) {
                assert_eq!((*us, *src), (slos[&m.name], SloSource::Listed));
            }
        }
    }
}

#[test]
fn published_numbers_are_read_as_written() {
    let m = "fcn-d6_r101-d16_4xb2-40k_cityscapes-512x1024";
    let p = profiles::load(&data(), &[m.to_string()], &["L4".to_string()]).unwrap();
    let l4 = p[0].share("L4", 1).unwrap();
    // The README's example: row 0 = 438, 857, 1327, ...
    assert_eq!(&l4.us[0][..3], &[438, 857, 1327]);
    // Sum of the blocks at batch 1: 6,924 us (README), the SLO 33,279 us listed.
    assert_eq!(p[0].whole_us("L4", 1, 1), Some(6924));
    assert_eq!(p[0].listed_slo_us, Some(33279));
    assert_eq!(p[0].cut_bytes.len(), p[0].blocks - 1);
    assert_eq!(l4.range_us(0..2, 1), Some(l4.us[0][0] + l4.us[1][0]));
    assert_eq!(l4.range_us(0..2, 9), None, "batch 9 is not profiled");
}

#[test]
fn default_slos_come_from_the_reference_class() {
    let d = tmp("slo");
    std::fs::write(d.join("cut-bytes/m.csv"), "100\n").unwrap();
    std::fs::write(d.join("block-latency/m-A-1.csv"), "10,18\n20,35\n").unwrap();
    std::fs::write(d.join("block-latency/m-B-1.csv"), "30,50\n40,70\n").unwrap();
    let p = profiles::load(&d, &["m".into()], &["A".into(), "B".into()]).unwrap();
    let mut w: Workload = toml::from_str("reference_class = \"B\"\n[[model]]\nname = \"m\"\nweight = 1\n").unwrap();
    assert_eq!(w.slos_us(&p).unwrap(), vec![(5 * 70, SloSource::Reference)]);
    w.model[0].slo_ms = Some(2.5);
    assert_eq!(w.slos_us(&p).unwrap(), vec![(2500, SloSource::Given)]);
    w.model[0].slo_ms = None;
    w.reference_class = "C".into();
    let e = w.slos_us(&p).unwrap_err().to_string();
    assert!(e.contains("'m'") && e.contains("reference class 'C'"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_profiles_name_the_model_class_and_file() {
    let d = tmp("bad");
    std::fs::write(d.join("cut-bytes/m.csv"), "100\n200\n").unwrap();
    std::fs::write(d.join("block-latency/m-A-1.csv"), "1,2\n3,4\n5,6\n").unwrap();
    std::fs::write(d.join("block-latency/m-A-2.csv"), "1\n3\n").unwrap();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // A missing class file: model, class, share and path.
    let e = profiles::load(&d, &names(&["m"]), &names(&["A", "Z"])).unwrap_err();
    assert!(matches!(e, PlannerError::MissingProfile { .. }));
    let e = e.to_string();
    assert!(e.contains("'m'") && e.contains("'Z'") && e.contains("m-Z-1.csv"), "{e}");
    // Block counts that disagree: every file with its count.
    let e = profiles::load(&d, &names(&["m"]), &names(&["A"])).unwrap_err().to_string();
    assert!(e.contains("disagree") && e.contains("m-A-2.csv has 2 rows") && e.contains("3 blocks"), "{e}");
    // Unknown model: the cut-bytes file it needs.
    let e = profiles::load(&d, &names(&["nope"]), &names(&["A"])).unwrap_err().to_string();
    assert!(e.contains("'nope'") && e.contains("cut-bytes/nope.csv"), "{e}");
    // Malformed values: file and line.
    std::fs::write(d.join("block-latency/m-A-2.csv"), "1\nx\n3\n").unwrap();
    let e = profiles::load(&d, &names(&["m"]), &names(&["A"])).unwrap_err().to_string();
    assert!(e.contains("m-A-2.csv, line 2"), "{e}");
    std::fs::write(d.join("block-latency/m-A-2.csv"), "1\n2,3\n3\n").unwrap();
    let e = profiles::load(&d, &names(&["m"]), &names(&["A"])).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("2 values"), "{e}");
    std::fs::write(d.join("block-latency/m-A-2.csv"), "1\n0\n3\n").unwrap();
    let e = profiles::load(&d, &names(&["m"]), &names(&["A"])).unwrap_err().to_string();
    assert!(e.contains("latency of 0"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_fleets_and_workloads_say_what_is_wrong() {
    let fleet = |t: &str| {
        toml::from_str::<Fleet>(t)
            .map_err(|e| e.to_string())
            .and_then(|f| f.validate("fleet").map_err(|e| e.to_string()))
    };
    assert!(
        fleet("bandwidth_gbps = 0\n[[class]]\nname = \"A\"\ncount = 1\ngpus_per_server = 1\n")
            .unwrap_err()
            .contains("bandwidth")
    );
    assert!(fleet("bandwidth_gbps = 1\n").unwrap_err().contains("class"));
    assert!(
        fleet("bandwidth_gbps = 1\n[[class]]\nname = \"A-B\"\ncount = 1\ngpus_per_server = 1\n")
            .unwrap_err()
            .contains("'-'")
    );
    assert!(
        fleet("bandwidth_gbps = 1\n[[class]]\nname = \"A\"\ncount = 1\ngpus_per_server = 0\n")
            .unwrap_err()
            .contains("gpus_per_server")
    );
    assert!(
        fleet("bandwidth_gbps = 1\n[[class]]\nname = \"A\"\ncount = 1\ngpus_per_server = 1\nshares = [0]\n")
            .unwrap_err()
            .contains("shares")
    );
    assert!(
        fleet("bandwidth_gbps = 1\n[[class]]\nname = \"A\"\ncount = 1\ngpus_per_server = 1\ncolour = 2\n")
            .unwrap_err()
            .contains("colour")
    );
    let dup = "bandwidth_gbps = 1\n[[class]]\nname = \"A\"\ncount = 1\ngpus_per_server = 1\n[[class]]\nname = \"A\"\ncount = 1\ngpus_per_server = 1\n";
    assert!(fleet(dup).unwrap_err().contains("twice"));
    let work = |t: &str| {
        toml::from_str::<Workload>(t)
            .map_err(|e| e.to_string())
            .and_then(|w| w.validate("workload").map_err(|e| e.to_string()))
    };
    assert!(work("[[model]]\nname = \"m\"\nweight = 0\n").unwrap_err().contains("weight"));
    assert!(work("[[model]]\nname = \"m\"\nweight = 1\nslo_ms = -1\n").unwrap_err().contains("slo_ms"));
    assert!(work("model = []\n").unwrap_err().contains("no [[model]]"));
    let e = Fleet::load(Path::new("/nonexistent/fleet.toml")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/fleet.toml"), "{e}");
}
