//! Topology compilation: sub-topologies and repartition topics, deterministic names,
//! descriptions (text, Mermaid, DOT) and validation errors that name the offending node.

use streams_core::processor::{Processor, ProcessorContext, ProcessorResult};
use streams_core::record::Record;
use streams_core::topology::{InternalTopicKind, SinkSpec, SourceSpec, TopologyBuilder};
use streams_dsl::prelude::*;

fn word_count(store: Option<&str>) -> StreamsBuilder {
    let builder = StreamsBuilder::new();
    let materialized = match store {
        Some(name) => Materialized::as_(name),
        None => Materialized::default(),
    };
    builder
        .stream::<(), Option<String>>(
            "streams-plaintext-input",
            Consumed::with(Serdes::unit(), Serdes::option(Serdes::string())),
        )
        .flat_map_values(|line| {
            line.unwrap_or_default()
                .to_lowercase()
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word| word.clone(),
            Grouped::with(Serdes::string(), Serdes::string()),
        )
        .count(materialized)
        .to_stream()
        .to(
            "streams-wordcount-output",
            Produced::with(Serdes::string(), Serdes::option(Serdes::i64())),
        );
    builder
}

#[test]
fn word_count_has_two_subtopologies_joined_by_a_repartition_topic() {
    let topology = word_count(Some("counts")).build().expect("build");
    let text = topology.describe().to_string();
    assert_eq!(topology.subtopologies().len(), 2, "{text}");
    assert!(
        text.contains("Sub-topology: 0") && text.contains("Sub-topology: 1"),
        "{text}"
    );
    assert!(
        text.contains("Source: KSTREAM-SOURCE-0000000000 (topics: [streams-plaintext-input])"),
        "{text}"
    );
    assert!(
        text.contains("Sink: counts-repartition-sink (topic: counts-repartition)"),
        "{text}"
    );
    assert!(
        text.contains("Source: counts-repartition-source (topics: [counts-repartition])"),
        "{text}"
    );
    assert!(text.contains("(stores: [counts])"), "{text}");
    assert!(text.contains("Sink: KSTREAM-SINK-"), "{text}");

    let first = &topology.subtopologies()[0];
    let second = &topology.subtopologies()[1];
    assert!(first
        .sink_topics()
        .iter()
        .any(|t| t.name() == "counts-repartition"));
    assert!(second
        .source_topics()
        .iter()
        .any(|t| t.name() == "counts-repartition"));
    assert_eq!(second.stores(), ["counts".to_string()]);

    let internal = topology.internal_topics();
    assert!(internal.iter().any(|t| t.name == "counts-repartition"
        && t.kind
            == InternalTopicKind::Repartition {
                writer: 0,
                reader: 1,
                partitions: None
            }));
    assert!(internal.iter().any(|t| t.name == "counts-changelog"
        && matches!(&t.kind, InternalTopicKind::Changelog { store, .. } if store == "counts")));
    // At run time the application id prefixes internal topics.
    let reading = topology.subtopology_reading("wordcount-counts-repartition", "wordcount");
    assert_eq!(reading, Some(1));
}

#[test]
fn building_the_same_code_again_gives_the_same_names() {
    for store in [Some("counts"), None] {
        let a = word_count(store).build().expect("build a");
        let b = word_count(store).build().expect("build b");
        assert_eq!(a.describe(), b.describe());
        assert_eq!(a.internal_topics(), b.internal_topics());
    }
    // Without names, the store and its topics get generated, stable names.
    let generated = word_count(None).build().expect("build");
    let names: Vec<String> = generated
        .internal_topics()
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(
        names,
        vec![
            "KSTREAM-AGGREGATE-STATE-STORE-0000000004-repartition".to_string(),
            "KSTREAM-AGGREGATE-STATE-STORE-0000000004-changelog".to_string(),
        ]
    );
}

#[test]
fn mermaid_and_dot_draw_both_subtopologies_and_the_topic_between_them() {
    let d = word_count(Some("counts"))
        .build()
        .expect("build")
        .describe();
    let mermaid = d.to_mermaid();
    assert!(mermaid.starts_with("flowchart LR"));
    assert!(mermaid.contains("subgraph sub0") && mermaid.contains("subgraph sub1"));
    assert!(mermaid.contains("counts_repartition_sink --> topic_counts_repartition"));
    assert!(mermaid.contains("topic_counts_repartition --> counts_repartition_source"));
    let dot = d.to_dot();
    assert!(dot.starts_with("digraph topology {"));
    assert!(dot.contains("subgraph cluster_0") && dot.contains("subgraph cluster_1"));
    assert!(dot.contains("counts_repartition_sink -> topic_counts_repartition;"));
    assert!(dot.trim_end().ends_with('}'));
}

#[test]
fn a_key_change_before_an_aggregation_repartitions_and_none_without() {
    let keyed = StreamsBuilder::new();
    keyed
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v| v.len() as i64)
        .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()))
        .count(Materialized::as_("c"));
    assert_eq!(
        keyed.build().expect("build").subtopologies().len(),
        1,
        "map_values keeps the key"
    );

    let rekeyed = StreamsBuilder::new();
    rekeyed
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .map(|k, v| (v, k))
        .filter(|_, _| true)
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("c"));
    assert_eq!(
        rekeyed.build().expect("build").subtopologies().len(),
        2,
        "map changes the key, even behind a filter"
    );
}

fn build_err(builder: &StreamsBuilder) -> String {
    builder
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn validation_errors_name_the_offending_node() {
    // Two processors with one name.
    let b = StreamsBuilder::new();
    let s = b.stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()));
    s.filter(|_, _| true)
        .named("twin")
        .to("a", Produced::with(Serdes::string(), Serdes::string()));
    s.filter(|_, _| true)
        .named("twin")
        .to("b", Produced::with(Serdes::string(), Serdes::string()));
    let err = build_err(&b);
    assert!(
        err.contains("`twin`") && err.contains("exists already"),
        "{err}"
    );

    // Two sources on one topic.
    let b = StreamsBuilder::new();
    b.stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()));
    b.stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()));
    let err = build_err(&b);
    assert!(
        err.contains("KSTREAM-SOURCE-0000000001")
            && err.contains("already read by source `KSTREAM-SOURCE-0000000000`"),
        "{err}"
    );

    // A processor naming a store that was never added.
    let b = StreamsBuilder::new();
    struct Nop;
    impl Processor<String, String, String, String> for Nop {
        fn process(
            &mut self,
            r: Record<String, String>,
            ctx: &mut ProcessorContext<'_, String, String>,
        ) -> ProcessorResult {
            ctx.forward(r)
        }
    }
    b.stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .process(|| Nop, &["ghost"]);
    let err = build_err(&b);
    assert!(
        err.contains("KSTREAM-PROCESSOR-0000000001") && err.contains("`ghost`"),
        "{err}"
    );

    // A store no processor uses.
    let b = StreamsBuilder::new();
    b.add_state_store(Stores::key_value("lonely", Serdes::string(), Serdes::i64()))
        .expect("add");
    b.stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let err = build_err(&b);
    assert!(err.contains("`lonely`"), "{err}");

    // Two aggregations with one store name.
    let b = StreamsBuilder::new();
    let g = b
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::default());
    g.count(Materialized::as_("same"));
    g.count(Materialized::as_("same"));
    let err = build_err(&b);
    assert!(
        err.contains("`same`") && err.contains("exists already"),
        "{err}"
    );
}

#[test]
fn processor_api_type_mismatches_are_caught_when_building() {
    struct Lengths;
    impl Processor<String, String, String, i64> for Lengths {
        fn process(
            &mut self,
            r: Record<String, String>,
            ctx: &mut ProcessorContext<'_, String, i64>,
        ) -> ProcessorResult {
            let n = r.value.len() as i64;
            ctx.forward(r.with_value(n))
        }
    }
    let mut b = TopologyBuilder::new();
    b.add_source(
        "src",
        &["in"],
        SourceSpec::new(Serdes::string(), Serdes::string()),
    )
    .expect("source");
    b.add_processor("len", || Lengths, &["src"])
        .expect("processor");
    let err = b
        .add_sink(
            "out",
            SinkSpec::new("out", Serdes::string(), Serdes::string()),
            &["len"],
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("`out`") && err.contains("parent `len` forwards (alloc::string::String, i64)"),
        "{err}"
    );
    let err = b
        .add_processor("orphan", || Lengths, &["nowhere"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("`orphan`") && err.contains("parent `nowhere` does not exist"),
        "{err}"
    );
}
