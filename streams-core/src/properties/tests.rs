//! Tests of the properties syntax and of the mapping onto this crate's settings.

use super::*;
use proptest::strategy::Strategy;

fn pairs(text: &str) -> Vec<(String, String)> {
    parse("t", text)
        .expect("parses")
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn load_err(text: &str) -> String {
    match StreamsConfig::from_properties_str(text) {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn loaded(text: &str) -> StreamsConfig {
    StreamsConfig::from_properties_str(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn separators_and_whitespace() {
    assert_eq!(
        pairs("a=1\nb: 2\nc 3\n  d  =  4  \ne\t:\tx\nf\x0c=\x0cy\ng\n h = \n"),
        vec![
            pair("a", "1"),
            pair("b", "2"),
            pair("c", "3"),
            pair("d", "4  "),
            pair("e", "x"),
            pair("f", "y"),
            pair("g", ""),
            pair("h", ""),
        ]
    );
    // Only the first separator splits; later ones belong to the value.
    assert_eq!(
        pairs("url=http://h:1/a=b\nk = = v\nk2 :=v"),
        vec![
            pair("url", "http://h:1/a=b"),
            pair("k", "= v"),
            pair("k2", "=v")
        ]
    );
}

#[test]
fn comments_blank_lines_and_line_endings() {
    assert_eq!(
        pairs("# c\n! c\n   # indented\n\n \t \r\na=1\r\nb=2\rc=3\n#d=4"),
        vec![pair("a", "1"), pair("b", "2"), pair("c", "3")]
    );
    // `#` after the start of a line is text.
    assert_eq!(
        pairs("a=1 # not a comment"),
        vec![pair("a", "1 # not a comment")]
    );
    // A comment ending in a backslash does not continue.
    assert_eq!(pairs("# c \\\na=1"), vec![pair("a", "1")]);
}

#[test]
fn continuation_lines() {
    assert_eq!(
        pairs("a=one, \\\n     two, \\\n\tthree\nb=x"),
        vec![pair("a", "one, two, three"), pair("b", "x")]
    );
    // An even number of backslashes is escaped backslashes, not a continuation.
    assert_eq!(
        pairs("a=x\\\\\nb=y"),
        vec![pair("a", "x\\"), pair("b", "y")]
    );
    // A continued line starting with `#` is not a comment; a key can continue too.
    assert_eq!(pairs("a=1\\\n#2"), vec![pair("a", "1#2")]);
    assert_eq!(pairs("ke\\\n  y=v"), vec![pair("key", "v")]);
    // A continuation at the end of the text ends the line.
    assert_eq!(pairs("a=1\\"), vec![pair("a", "1")]);
    assert_eq!(pairs("a=1\\\n"), vec![pair("a", "1")]);
    // The line number is the first line's.
    let p = parse("t", "\n\na=1\\\n2\nb=3").expect("parses");
    assert_eq!((p[0].line, p[1].line), (3, 5));
}

#[test]
fn escapes() {
    assert_eq!(
        pairs(r"a=t\tn\nr\rf\fb\\q\q\=\:\ x"),
        vec![pair("a", "t\tn\nr\rf\x0cb\\qq=: x")]
    );
    assert_eq!(
        pairs(r"k\=ey\:with\ spaces=v"),
        vec![pair("k=ey:with spaces", "v")]
    );
    assert_eq!(pairs(r"\ lead=v"), vec![pair(" lead", "v")]);
    assert_eq!(
        pairs(r"u=\u00e9\u0041\uD83D\uDE00"),
        vec![pair("u", "éA😀")]
    );
    assert_eq!(pairs("raw=é😀"), vec![pair("raw", "é😀")]);
}

#[test]
fn malformed_unicode_escapes_name_the_line() {
    for text in [
        "a=1\nb=\\u12",
        "a=1\nb=\\u12g4",
        "a=1\nb\\uZZZZ=1",
        "a=1\nb=\\uD800",
    ] {
        let e = parse("file.properties", text).expect_err(text).to_string();
        assert!(e.starts_with("file.properties:2: "), "{e}");
    }
    let e = load_err("a=1\nb=\\u12");
    assert!(e.contains("<properties>:2") && e.contains("\\uXXXX"), "{e}");
}

#[test]
fn kafka_streams_names_and_values_map_onto_ours() {
    let c = loaded(
        "application.id=app\n\
         default.deserialization.exception.handler=org.apache.kafka.streams.errors.LogAndContinueExceptionHandler\n\
         default.production.exception.handler=org.apache.kafka.streams.errors.DefaultProductionExceptionHandler\n\
         processing.exception.handler=LogAndContinueProcessingExceptionHandler\n\
         processing.guarantee=exactly_once_v2\n\
         cache.max.bytes.buffering=1234\n",
    );
    assert_eq!(
        c.get("default.deserialization.exception.handler"),
        Some("log-and-continue")
    );
    assert_eq!(c.get("default.production.exception.handler"), Some("fail"));
    assert_eq!(
        c.get("processing.exception.handler"),
        Some("log-and-continue")
    );
    assert_eq!(c.get("processing.guarantee"), Some("exactly_once_v2"));
    assert_eq!(c.get("statestore.cache.max.bytes"), Some("1234"));
    assert_eq!(c.get("cache.max.bytes.buffering"), None);
    let c = loaded(
        "deserialization.exception.handler=org.apache.kafka.streams.errors.LogAndFailExceptionHandler\n\
         processing.exception.handler=org.apache.kafka.streams.errors.LogAndFailProcessingExceptionHandler\n\
         default.deserialization.exception.handler=log-and-continue",
    );
    // Both names set the one setting; the later line wins.
    assert!(c.get("default.deserialization.exception.handler").is_some());
    assert_eq!(c.get("processing.exception.handler"), Some("log-and-fail"));
    // The current name wins over the deprecated one, whatever the order.
    for text in [
        "statestore.cache.max.bytes=1\ncache.max.bytes.buffering=2",
        "cache.max.bytes.buffering=2\nstatestore.cache.max.bytes=1",
    ] {
        assert_eq!(loaded(text).get("statestore.cache.max.bytes"), Some("1"));
    }
}

#[test]
fn removed_and_foreign_values_are_refused() {
    for old in ["exactly_once", "exactly_once_beta"] {
        let e = load_err(&format!("processing.guarantee={old}"));
        assert!(
            e.contains("removed") && e.contains("exactly_once_v2"),
            "{e}"
        );
    }
    let e =
        load_err("client.id=x\n default.deserialization.exception.handler = com.acme.MyHandler");
    assert!(
        e.contains(":2:")
            && e.contains("com.acme.MyHandler")
            && e.contains("with_deserialization_handler"),
        "{e}"
    );
    let e = load_err("num.stream.threads=two");
    assert!(
        e.contains(":1:") && e.contains("`num.stream.threads`") && e.contains("whole number"),
        "{e}"
    );
    let e = load_err("\n\ndefault.timestamp.extractor=com.acme.Extractor");
    assert!(e.contains(":3:"), "{e}");
}

#[test]
fn client_prefixes_pass_through() {
    let c = loaded(
        "consumer.fetch.min.bytes=1\nproducer.linger.ms=5\nadmin.socket.timeout.ms=9000\n\
         consumer.fetch.max.wait.ms=200\nmain.consumer.fetch.max.wait.ms=300\n\
         main.consumer.session.timeout.ms=45000",
    );
    assert_eq!(c.get("consumer.fetch.min.bytes"), Some("1"));
    assert_eq!(c.get("producer.linger.ms"), Some("5"));
    assert_eq!(c.get("admin.socket.timeout.ms"), Some("9000"));
    // main.consumer. outranks consumer.; Java's name becomes librdkafka's.
    assert_eq!(c.get("consumer.fetch.wait.max.ms"), Some("300"));
    assert_eq!(c.get("consumer.session.timeout.ms"), Some("45000"));
    for prefix in ["restore.consumer.", "global.consumer."] {
        let e = load_err(&format!("{prefix}fetch.min.bytes=1"));
        assert!(e.contains("use `consumer.fetch.min.bytes`"), "{e}");
    }
    let e = load_err("consumer.max.poll.records=10");
    assert!(e.contains("buffered.records.per.partition"), "{e}");
    let e = load_err("producer.no.such.thing=1");
    assert!(
        e.contains("`producer.no.such.thing`") && e.contains("librdkafka"),
        "{e}"
    );
    // Protected settings are refused with the line.
    let e = load_err(
        "x.y=1\n"
            .replace("x.y=1\n", "\nconsumer.group.id=other")
            .as_str(),
    );
    assert!(e.contains(":2:") && e.contains("application.id"), "{e}");
}

#[test]
fn unprefixed_client_settings_apply_to_every_client() {
    let c = loaded("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nreceive.buffer.bytes=65536\nmetadata.max.age.ms=1000");
    for p in ["consumer.", "producer.", "admin."] {
        assert_eq!(c.get(&format!("{p}security.protocol")), Some("SASL_SSL"));
        assert_eq!(c.get(&format!("{p}sasl.mechanisms")), Some("PLAIN"));
        assert_eq!(
            c.get(&format!("{p}socket.receive.buffer.bytes")),
            Some("65536")
        );
        assert_eq!(c.get(&format!("{p}metadata.max.age.ms")), Some("1000"));
    }
    assert_eq!(c.get("security.protocol"), None);
    // A prefixed setting outranks the unprefixed one, whatever the order.
    let c = loaded("producer.security.protocol=SSL\nsecurity.protocol=PLAINTEXT");
    assert_eq!(c.get("producer.security.protocol"), Some("SSL"));
    assert_eq!(c.get("consumer.security.protocol"), Some("PLAINTEXT"));
    // group.protocol is Kafka Streams' (4.1) and maps to the consumer's.
    assert_eq!(
        loaded("group.protocol=classic").get("consumer.group.protocol"),
        Some("classic")
    );
    assert!(load_err("group.protocol=streams").contains("KIP-1071"));
}

#[test]
fn jaas_and_stores_map_to_librdkafka() {
    let c = loaded(
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"alice\" password=\"p@ss \\\\\"word\\\\\"\";",
        // (two backslashes in the file are one for JAAS, which escapes the quote)
    );
    for p in ["consumer.", "producer.", "admin."] {
        assert_eq!(c.get(&format!("{p}sasl.username")), Some("alice"));
        assert_eq!(c.get(&format!("{p}sasl.password")), Some("p@ss \"word\""));
    }
    let c = loaded("consumer.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n  username=bob \\\n  password=\"x\";");
    assert_eq!(c.get("consumer.sasl.username"), Some("bob"));
    assert_eq!(c.get("producer.sasl.username"), None);
    for bad in [
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\" password=\"hunter2\"",
        "org.apache.kafka.common.security.plain.PlainLoginModule optional username=\"a\" password=\"hunter2\";",
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\";",
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"a\" password=\"hunter2;",
        "com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;",
    ] {
        let e = load_err(&format!("sasl.jaas.config={bad}"));
        assert!(e.contains("`sasl.jaas.config`"), "{e}");
        assert!(!e.contains("hunter2"), "the password must not be in the error: {e}");
    }
    let c = loaded("ssl.truststore.location=/ca.pem\nssl.truststore.type=PEM");
    assert_eq!(c.get("admin.ssl.ca.location"), Some("/ca.pem"));
    assert_eq!(c.get("consumer.ssl.truststore.type"), None);
    // The type may be given for all clients and the location for one.
    let c = loaded("ssl.truststore.type=PEM\nproducer.ssl.truststore.location=/ca.pem");
    assert_eq!(c.get("producer.ssl.ca.location"), Some("/ca.pem"));
    let e = load_err("ssl.truststore.location=/ts.jks\nssl.truststore.password=x");
    assert!(e.contains("JKS") && e.contains("PEM"), "{e}");
    let e = load_err("ssl.truststore.location=/ts.p12\nssl.truststore.type=PKCS12");
    assert!(e.contains("PKCS12 truststores"), "{e}");
    let c = loaded("ssl.keystore.type=PKCS12\nssl.keystore.location=/k.p12\nssl.keystore.password=pw\nssl.key.password=kp");
    assert_eq!(c.get("consumer.ssl.keystore.location"), Some("/k.p12"));
    assert_eq!(c.get("consumer.ssl.keystore.password"), Some("pw"));
    assert_eq!(c.get("consumer.ssl.key.password"), Some("kp"));
    let c = loaded("ssl.keystore.type=PEM\nssl.keystore.location=/both.pem\nssl.endpoint.identification.algorithm=");
    assert_eq!(
        c.get("producer.ssl.certificate.location"),
        Some("/both.pem")
    );
    assert_eq!(c.get("producer.ssl.key.location"), Some("/both.pem"));
    assert_eq!(
        c.get("producer.ssl.endpoint.identification.algorithm"),
        Some("none")
    );
    assert!(load_err("ssl.keystore.location=/k.jks").contains("JKS"));
    assert!(load_err("ssl.enabled.protocols=TLSv1.3").contains("JVM TLS"));
}

#[test]
fn unsupported_and_unknown_keys_are_told_apart() {
    let e = load_err("application.id=a\ndefault.key.serde=org.apache.kafka.common.serialization.Serdes$StringSerde");
    assert!(
        e.contains(":2:")
            && e.contains("`default.key.serde`")
            && e.contains("does not support")
            && e.contains("in code"),
        "{e}"
    );
    for key in [
        "default.value.serde",
        "rocksdb.config.setter",
        "default.dsl.store",
        "num.standby.replicas",
        "upgrade.from",
        "max.task.idle.ms",
        "metrics.sample.window.ms",
        "client.tag.zone",
        "topic.segment.bytes",
    ] {
        let e = load_err(&format!("{key}=1"));
        assert!(
            e.contains(&format!("`{key}`")) && e.contains("kstreams does not support"),
            "{e}"
        );
    }
    // Kafka's defaults for these are no-ops here.
    assert!(StreamsConfig::from_properties_str(
        "topology.optimization=none\nnum.standby.replicas=0"
    )
    .is_ok());
    assert!(load_err("topology.optimization=all").contains("does not rewrite"));
    // Kafka Streams settings this crate implements under the same name.
    let supported = StreamsConfig::from_properties_str(
        "application.id=a\nrepartition.purge.interval.ms=5000\nmetrics.recording.level=DEBUG\n\
         errors.deadletterqueue.topic.name=dlq",
    )
    .expect("supported settings load");
    let resolved = supported.validate().expect("valid");
    assert_eq!(resolved.repartition_purge_interval.as_millis(), 5000);
    assert!(resolved.store_latencies);
    assert_eq!(resolved.dead_letter_queue.as_deref(), Some("dlq"));
    let loud = match StreamsConfig::from_properties_str(
        "application.id=a\nmetrics.recording.level=LOUD",
    ) {
        Err(e) => e.to_string(),
        Ok(c) => c.validate().expect_err("LOUD is no level").to_string(),
    };
    assert!(loud.contains("INFO, DEBUG or TRACE"), "{loud}");
    let e = load_err("\n\napplicaton.id=typo");
    assert!(
        e.contains(":3:") && e.contains("`applicaton.id`") && e.contains("unknown setting"),
        "{e}"
    );
    assert!(!e.contains("does not support"), "{e}");
    // Java client names with no equivalent.
    assert!(load_err("key.serializer=x").contains("in code"));
}

#[test]
fn settings_that_depend_on_each_other_are_checked_when_the_file_names_the_application() {
    let e = load_err(
        "application.id=a\nprocessing.guarantee=exactly_once_v2\nproducer.transaction.timeout.ms=50",
    );
    assert!(
        e.contains(":3:") && e.contains("producer.transaction.timeout.ms"),
        "{e}"
    );
}

#[test]
fn a_realistic_kafka_streams_file_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("streams.properties");
    std::fs::write(
        &path,
        include_str!("../../tests/data/kafka-streams.properties"),
    )
    .expect("write");
    let c = StreamsConfig::from_properties_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let r = c.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.application_id, "orders-enrichment");
    assert_eq!(
        r.bootstrap_servers.as_deref(),
        Some("broker-1.example.com:9093,broker-2.example.com:9093")
    );
    assert_eq!(r.num_stream_threads, 4);
    assert_eq!(r.guarantee, crate::ProcessingGuarantee::ExactlyOnceV2);
    assert_eq!(r.commit_interval, std::time::Duration::from_millis(200));
    assert_eq!(r.cache_max_bytes, 52_428_800);
    assert_eq!(r.replication_factor, 3);
    assert_eq!(r.state_dir, PathBuf::from("/var/lib/kafka-streams"));
    assert_eq!(
        c.get("default.deserialization.exception.handler"),
        Some("log-and-continue")
    );
    assert_eq!(
        c.get("default.timestamp.extractor"),
        Some("org.apache.kafka.streams.processor.WallclockTimestampExtractor")
    );
    for client in [&r.consumer, &r.producer, &r.admin] {
        assert_eq!(
            client.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
        assert_eq!(
            client.get("sasl.mechanisms").map(String::as_str),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(
            client.get("sasl.username").map(String::as_str),
            Some("orders-app")
        );
        assert_eq!(
            client.get("sasl.password").map(String::as_str),
            Some("s3cr3t")
        );
        assert_eq!(
            client.get("ssl.ca.location").map(String::as_str),
            Some("/etc/kafka/ca.pem")
        );
    }
    assert_eq!(
        r.consumer.get("fetch.wait.max.ms").map(String::as_str),
        Some("250")
    );
    assert_eq!(
        r.consumer.get("session.timeout.ms").map(String::as_str),
        Some("45000")
    );
    assert_eq!(r.producer.get("linger.ms").map(String::as_str), Some("20"));
    assert_eq!(r.producer.get("session.timeout.ms"), None);
    assert_eq!(
        r.admin.get("request.timeout.ms").map(String::as_str),
        Some("60000")
    );

    let missing = StreamsConfig::from_properties_file(dir.path().join("nope.properties"))
        .expect_err("no file");
    assert!(missing.to_string().contains("nope.properties"), "{missing}");
}

#[test]
fn latin1_files_are_read_as_java_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("latin1.properties");
    std::fs::write(&path, b"application.id=caf\xe9\nclient.id=x\n").expect("write");
    let e =
        StreamsConfig::from_properties_file(&path).expect_err("é is not a valid application.id");
    assert!(e.to_string().contains("latin1.properties:1"), "{e}");
    std::fs::write(&path, b"client.id=caf\xe9\n").expect("write");
    let c = StreamsConfig::from_properties_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.get("client.id"), Some("café"));
}

proptest::proptest! {
    #[test]
    fn parsing_never_panics(text in "\\PC*") {
        let _ = parse("p", &text);
        let _ = StreamsConfig::from_properties_str(&text);
    }

    #[test]
    fn parsing_never_panics_on_properties_like_text(
        text in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("\\".to_owned()),
                proptest::strategy::Just("\\u".to_owned()),
                proptest::strategy::Just("\n".to_owned()),
                proptest::strategy::Just("\r\n".to_owned()),
                proptest::strategy::Just("=".to_owned()),
                proptest::strategy::Just(":".to_owned()),
                proptest::strategy::Just(" ".to_owned()),
                proptest::strategy::Just("#".to_owned()),
                proptest::strategy::Just("sasl.jaas.config=".to_owned()),
                proptest::strategy::Just("consumer.".to_owned()),
                "[a-z.\"; ]{0,8}",
                "\\PC{0,3}",
            ],
            0..40,
        ).prop_map(|parts| parts.concat())
    ) {
        let _ = parse("p", &text);
        let _ = StreamsConfig::from_properties_str(&text);
    }

    #[test]
    fn escaped_keys_and_values_round_trip(key in "[^\r\n]{1,12}", value in "[^\r\n]{0,12}") {
        let escape = |s: &str, is_key: bool| -> String {
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\x0c' => out.push_str("\\f"),
                    '=' | ':' | '#' | '!' => { out.push('\\'); out.push(c) }
                    ' ' if is_key || i == 0 => out.push_str("\\ "),
                    c => out.push(c),
                }
            }
            out
        };
        let text = format!("{}={}", escape(&key, true), escape(&value, false));
        let parsed = parse("p", &text).expect("escaped text parses");
        proptest::prop_assert_eq!(parsed.len(), 1);
        proptest::prop_assert_eq!(&parsed[0].key, &key);
        proptest::prop_assert_eq!(&parsed[0].value, &value);
    }
}
