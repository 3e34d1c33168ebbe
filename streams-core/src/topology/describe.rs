//! A topology's description: what [`Topology::describe`] returns. Its `Display` reads like Kafka
//! Streams' `TopologyDescription`; [`TopologyDescription::to_mermaid`] and
//! [`TopologyDescription::to_dot`] draw it.

use std::fmt;

use super::{NodeKind, Topology};

/// One node as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDescription {
    /// A source and its topics.
    Source {
        /// Node name.
        name: String,
        /// Topics read (internal ones without the application id).
        topics: Vec<String>,
        /// Children.
        children: Vec<String>,
    },
    /// A processor and its stores.
    Processor {
        /// Node name.
        name: String,
        /// Stores it uses.
        stores: Vec<String>,
        /// Children.
        children: Vec<String>,
        /// Parents.
        parents: Vec<String>,
    },
    /// A sink and its topic.
    Sink {
        /// Node name.
        name: String,
        /// Topic written, or `None` when chosen per record.
        topic: Option<String>,
        /// Parents.
        parents: Vec<String>,
    },
}

impl NodeDescription {
    /// The node's name.
    pub fn name(&self) -> &str {
        match self {
            NodeDescription::Source { name, .. }
            | NodeDescription::Processor { name, .. }
            | NodeDescription::Sink { name, .. } => name,
        }
    }
}

/// One sub-topology as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTopologyDescription {
    /// Its number.
    pub id: u32,
    /// Its nodes, parents before children.
    pub nodes: Vec<NodeDescription>,
}

/// A whole topology as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    /// The sub-topologies.
    pub subtopologies: Vec<SubTopologyDescription>,
    /// The global stores (no tasks: the instance's global thread fills them from their topic).
    pub global_stores: Vec<super::GlobalStore>,
}

impl Topology {
    /// Describes the topology: sub-topologies, sources, processors, stores and sinks.
    pub fn describe(&self) -> TopologyDescription {
        let name_of = |i: &usize| self.nodes[*i].name.clone();
        let subtopologies = self
            .subtopologies
            .iter()
            .map(|sub| SubTopologyDescription {
                id: sub.id,
                nodes: sub
                    .nodes
                    .iter()
                    .map(|i| {
                        let node = &self.nodes[*i];
                        let children = node.children.iter().map(name_of).collect();
                        let parents = node.parents.iter().map(name_of).collect();
                        match &node.kind {
                            NodeKind::Source { topics, .. } => NodeDescription::Source {
                                name: node.name.clone(),
                                topics: topics.iter().map(|t| t.name().to_owned()).collect(),
                                children,
                            },
                            NodeKind::Processor { .. } => NodeDescription::Processor {
                                name: node.name.clone(),
                                stores: node.stores.clone(),
                                children,
                                parents,
                            },
                            NodeKind::Sink { factory } => NodeDescription::Sink {
                                name: node.name.clone(),
                                topic: factory.topic().map(str::to_owned),
                                parents,
                            },
                        }
                    })
                    .collect(),
            })
            .collect();
        TopologyDescription {
            subtopologies,
            global_stores: self.globals.clone(),
        }
    }
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        for (i, sub) in self.subtopologies.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "   Sub-topology: {}", sub.id)?;
            for node in &sub.nodes {
                match node {
                    NodeDescription::Source {
                        name,
                        topics,
                        children,
                    } => {
                        writeln!(f, "    Source: {name} (topics: [{}])", list(topics))?;
                        writeln!(
                            f,
                            "      --> {}",
                            if children.is_empty() {
                                "none".into()
                            } else {
                                list(children)
                            }
                        )?;
                    }
                    NodeDescription::Processor {
                        name,
                        stores,
                        children,
                        parents,
                    } => {
                        writeln!(f, "    Processor: {name} (stores: [{}])", list(stores))?;
                        writeln!(
                            f,
                            "      --> {}",
                            if children.is_empty() {
                                "none".into()
                            } else {
                                list(children)
                            }
                        )?;
                        writeln!(f, "      <-- {}", list(parents))?;
                    }
                    NodeDescription::Sink {
                        name,
                        topic,
                        parents,
                    } => {
                        match topic {
                            Some(t) => writeln!(f, "    Sink: {name} (topic: {t})")?,
                            None => writeln!(f, "    Sink: {name} (extractor: chosen per record)")?,
                        }
                        writeln!(f, "      <-- {}", list(parents))?;
                    }
                }
            }
        }
        for global in &self.global_stores {
            writeln!(f)?;
            writeln!(
                f,
                "   Global store: {} (topic: {}; filled by the global thread, no tasks)",
                global.store, global.topic
            )?;
        }
        Ok(())
    }
}

/// A node id that Mermaid and DOT accept.
fn ident(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl TopologyDescription {
    fn edges(&self) -> Vec<(String, String)> {
        let mut edges = Vec::new();
        for sub in &self.subtopologies {
            for node in &sub.nodes {
                if let NodeDescription::Source { name, children, .. }
                | NodeDescription::Processor { name, children, .. } = node
                {
                    for child in children {
                        edges.push((name.clone(), child.clone()));
                    }
                }
            }
        }
        edges
    }

    /// Topic nodes: `(topic, sink nodes writing it, source nodes reading it)`.
    fn topics(&self) -> Vec<(String, Vec<String>, Vec<String>)> {
        fn entry(topics: &mut Vec<(String, Vec<String>, Vec<String>)>, topic: &str) -> usize {
            match topics.iter().position(|(t, _, _)| t == topic) {
                Some(i) => i,
                None => {
                    topics.push((topic.to_owned(), Vec::new(), Vec::new()));
                    topics.len() - 1
                }
            }
        }
        let mut topics: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        for sub in &self.subtopologies {
            for node in &sub.nodes {
                match node {
                    NodeDescription::Sink {
                        name,
                        topic: Some(t),
                        ..
                    } => {
                        let i = entry(&mut topics, t);
                        topics[i].1.push(name.clone());
                    }
                    NodeDescription::Source {
                        name, topics: read, ..
                    } => {
                        for t in read {
                            let i = entry(&mut topics, t);
                            topics[i].2.push(name.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        topics
    }

    /// A Mermaid flowchart: one subgraph per sub-topology, topics as cylinders.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for sub in &self.subtopologies {
            out.push_str(&format!(
                "  subgraph sub{}[\"Sub-topology {}\"]\n",
                sub.id, sub.id
            ));
            for node in &sub.nodes {
                let id = ident(node.name());
                let label = match node {
                    NodeDescription::Processor { name, stores, .. } if !stores.is_empty() => {
                        format!("{name}<br/>stores: {}", list(stores))
                    }
                    other => other.name().to_owned(),
                };
                let shape = match node {
                    NodeDescription::Source { .. } => format!("{id}[/\"{label}\"/]"),
                    NodeDescription::Sink { .. } => format!("{id}[\\\"{label}\"\\]"),
                    NodeDescription::Processor { .. } => format!("{id}[\"{label}\"]"),
                };
                out.push_str(&format!("    {shape}\n"));
            }
            out.push_str("  end\n");
        }
        for (topic, writers, readers) in self.topics() {
            let t = format!("topic_{}", ident(&topic));
            out.push_str(&format!("  {t}[(\"{topic}\")]\n"));
            for w in writers {
                out.push_str(&format!("  {} --> {t}\n", ident(&w)));
            }
            for r in readers {
                out.push_str(&format!("  {t} --> {}\n", ident(&r)));
            }
        }
        for (from, to) in self.edges() {
            out.push_str(&format!("  {} --> {}\n", ident(&from), ident(&to)));
        }
        out
    }

    /// A Graphviz DOT digraph: one cluster per sub-topology, topics as cylinders.
    pub fn to_dot(&self) -> String {
        let mut out =
            String::from("digraph topology {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
        for sub in &self.subtopologies {
            out.push_str(&format!(
                "  subgraph cluster_{} {{\n    label=\"Sub-topology {}\";\n",
                sub.id, sub.id
            ));
            for node in &sub.nodes {
                let (shape, label) = match node {
                    NodeDescription::Source { name, .. } => ("invhouse", name.clone()),
                    NodeDescription::Sink { name, .. } => ("house", name.clone()),
                    NodeDescription::Processor { name, stores, .. } if !stores.is_empty() => {
                        ("box", format!("{name}\\nstores: {}", list(stores)))
                    }
                    NodeDescription::Processor { name, .. } => ("box", name.clone()),
                };
                out.push_str(&format!(
                    "    {} [shape={shape}, label=\"{label}\"];\n",
                    ident(node.name())
                ));
            }
            out.push_str("  }\n");
        }
        for (topic, writers, readers) in self.topics() {
            let t = format!("topic_{}", ident(&topic));
            out.push_str(&format!("  {t} [shape=cylinder, label=\"{topic}\"];\n"));
            for w in writers {
                out.push_str(&format!("  {} -> {t};\n", ident(&w)));
            }
            for r in readers {
                out.push_str(&format!("  {t} -> {};\n", ident(&r)));
            }
        }
        for (from, to) in self.edges() {
            out.push_str(&format!("  {} -> {};\n", ident(&from), ident(&to)));
        }
        out.push_str("}\n");
        out
    }
}
