//! Foreign-key table joins through the TopologyTestDriver: orders (`order id -> customer
//! id:amount`) joined with customers (`customer id -> name`), inner and left, as orders move
//! between customers and either side changes or disappears; a proptest against the join of the
//! final tables recomputed from scratch.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streams_core::testing::{TestInputTopic, TestOutputTopic};
use streams_dsl::prelude::*;
use streams_dsl::ValueAndTimestamp;

type R = streams_core::Result<()>;
type In = TestInputTopic<String, Option<String>>;
type Out = TestOutputTopic<String, Option<String>>;

fn s(x: &str) -> String {
    x.to_owned()
}

fn customer_of(order: &str) -> String {
    order.split(':').next().unwrap_or_default().to_owned()
}

fn run(left: bool) -> streams_core::Result<(TopologyTestDriver, In, In, Out)> {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let orders = builder.table::<String, String>("orders", c(), Materialized::default());
    let customers = builder.table::<String, String>("customers", c(), Materialized::default());
    let m = Materialized::as_("named").with_value_serde(Serdes::string());
    let named = if left {
        orders.left_join_on_foreign_key(
            &customers,
            |o| customer_of(o),
            |o, name| format!("{o} by {}", name.map_or("?", |n| n.as_str())),
            TableJoined::as_("fk"),
            m,
        )
    } else {
        orders.join_on_foreign_key(
            &customers,
            |o| customer_of(o),
            |o, name| format!("{o} by {name}"),
            TableJoined::as_("fk"),
            m,
        )
    };
    named.to_stream().to(
        "out",
        Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
    );
    let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("fk"))?;
    let option = || Serdes::option(Serdes::string());
    let o = driver.create_input_topic("orders", Serdes::string(), option());
    let cu = driver.create_input_topic("customers", Serdes::string(), option());
    let out = driver.create_output_topic("out", Serdes::string(), option());
    Ok((driver, o, cu, out))
}

/// The last value per key of everything emitted so far.
fn rows(out: &Out) -> streams_core::Result<Vec<(String, Option<String>)>> {
    out.read_key_values_to_list()
}

fn some(k: &str, v: &str) -> (String, Option<String>) {
    (s(k), Some(s(v)))
}

#[test]
fn inner_join_follows_orders_and_customers() -> R {
    let (driver, o, cu, out) = run(false)?;
    cu.pipe_input_at(s("c1"), Some(s("Ada")), 1)?;
    o.pipe_input_at(s("o1"), Some(s("c1:30")), 2)?;
    assert_eq!(rows(&out)?, vec![some("o1", "c1:30 by Ada")]);
    o.pipe_input_at(s("o2"), Some(s("c2:5")), 3)?;
    assert!(out.is_empty(), "no customer c2 yet");
    cu.pipe_input_at(s("c2"), Some(s("Bo")), 4)?;
    assert_eq!(rows(&out)?, vec![some("o2", "c2:5 by Bo")]);
    cu.pipe_input_at(s("c1"), Some(s("Ada L.")), 5)?;
    assert_eq!(rows(&out)?, vec![some("o1", "c1:30 by Ada L.")]);
    // o1 moves to c2.
    o.pipe_input_at(s("o1"), Some(s("c2:31")), 6)?;
    assert_eq!(rows(&out)?, vec![some("o1", "c2:31 by Bo")]);
    cu.pipe_input_at(s("c1"), Some(s("nobody's")), 7)?;
    assert!(out.is_empty(), "c1 has no orders any more");
    // c2 disappears: both its orders leave the result.
    cu.pipe_input_at(s("c2"), None, 8)?;
    let mut gone = rows(&out)?;
    gone.sort();
    assert_eq!(gone, vec![(s("o1"), None), (s("o2"), None)]);
    // An order that moves to a missing customer leaves the result.
    cu.pipe_input_at(s("c3"), Some(s("Cy")), 9)?;
    o.pipe_input_at(s("o3"), Some(s("c3:1")), 10)?;
    o.pipe_input_at(s("o3"), Some(s("c9:1")), 11)?;
    assert_eq!(rows(&out)?, vec![some("o3", "c3:1 by Cy"), (s("o3"), None)]);
    let named = driver.key_value_store::<String, ValueAndTimestamp<String>>("named")?;
    assert!(named.all()?.is_empty());
    Ok(())
}

#[test]
fn left_join_keeps_every_order() -> R {
    let (driver, o, cu, out) = run(true)?;
    o.pipe_input_at(s("o1"), Some(s("c1:30")), 1)?;
    assert_eq!(rows(&out)?, vec![some("o1", "c1:30 by ?")]);
    cu.pipe_input_at(s("c1"), Some(s("Ada")), 2)?;
    assert_eq!(rows(&out)?, vec![some("o1", "c1:30 by Ada")]);
    o.pipe_input_at(s("o1"), Some(s("c2:30")), 3)?;
    assert_eq!(rows(&out)?, vec![some("o1", "c2:30 by ?")]);
    cu.pipe_input_at(s("c2"), Some(s("Bo")), 4)?;
    cu.pipe_input_at(s("c2"), None, 5)?;
    assert_eq!(
        rows(&out)?,
        vec![some("o1", "c2:30 by Bo"), some("o1", "c2:30 by ?")]
    );
    o.pipe_input_at(s("o1"), None, 6)?;
    assert_eq!(rows(&out)?, vec![(s("o1"), None)]);
    let named = driver.key_value_store::<String, ValueAndTimestamp<String>>("named")?;
    assert!(named.all()?.is_empty());
    Ok(())
}

#[test]
fn the_join_runs_through_its_named_internal_topics() -> R {
    let builder = StreamsBuilder::new();
    let c = || Consumed::with(Serdes::string(), Serdes::string());
    let orders = builder.table::<String, String>("orders", c(), Materialized::default());
    let customers = builder.table::<String, String>("customers", c(), Materialized::default());
    orders
        .join_on_foreign_key(
            &customers,
            |o| customer_of(o),
            |o, n| format!("{o}{n}"),
            TableJoined::as_("fk"),
            Materialized::with(Serdes::string(), Serdes::string()),
        )
        .to_stream()
        .to(
            "out",
            Produced::with(Serdes::string(), Serdes::option(Serdes::string())),
        );
    let topology = builder.build()?;
    let text = topology.describe().to_string();
    for name in [
        "fk-subscription-registration-repartition",
        "fk-subscription-response-repartition",
        "fk-subscription-store",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    assert_eq!(topology.subtopologies().len(), 2, "{text}");
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// After any sequence of updates, the result table (and the last change emitted per key)
    /// is the join of the final tables.
    #[test]
    fn foreign_key_joins_match_the_join_of_the_final_tables(
        left_join in any::<bool>(),
        events in proptest::collection::vec(
            (any::<bool>(), 0usize..5, proptest::option::weighted(0.8, (0usize..3, 0u8..4))),
            0..40,
        ),
    ) {
        let (driver, o, cu, out) = run(left_join).map_err(fail)?;
        let mut orders: BTreeMap<String, String> = BTreeMap::new();
        let mut customers: BTreeMap<String, String> = BTreeMap::new();
        for (i, (is_order, key, value)) in events.iter().enumerate() {
            if *is_order {
                let k = format!("o{key}");
                let v = value.map(|(c, a)| format!("c{c}:{a}"));
                o.pipe_input_at(k.clone(), v.clone(), i as i64).map_err(fail)?;
                match v { Some(v) => { orders.insert(k, v); } None => { orders.remove(&k); } }
            } else {
                let k = format!("c{}", key % 3);
                let v = value.map(|(_, n)| format!("name{n}"));
                cu.pipe_input_at(k.clone(), v.clone(), i as i64).map_err(fail)?;
                match v { Some(v) => { customers.insert(k, v); } None => { customers.remove(&k); } }
            }
        }
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        for (k, order) in &orders {
            match (customers.get(&customer_of(order)), left_join) {
                (Some(name), _) => { want.insert(k.clone(), format!("{order} by {name}")); }
                (None, true) => { want.insert(k.clone(), format!("{order} by ?")); }
                (None, false) => {}
            }
        }
        let named = driver.key_value_store::<String, ValueAndTimestamp<String>>("named").map_err(fail)?;
        let stored: BTreeMap<String, String> =
            named.all().map_err(fail)?.into_iter().map(|(k, v)| (k, v.value)).collect();
        prop_assert_eq!(&stored, &want);
        let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (k, v) in out.read_key_values_to_list().map_err(fail)? {
            last.insert(k, v);
        }
        let emitted: BTreeMap<String, String> =
            last.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        prop_assert_eq!(emitted, want);
    }
}
