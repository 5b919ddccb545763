//! A small YAML tree with line numbers, built from `yaml-rust2`'s event parser.
//!
//! Only what the pool format needs: scalars (kept as text, never typed: twemproxy reads
//! every value as a string and so do we), sequences and mappings, each node carrying
//! the 1-based line it starts on. Duplicate keys are kept (the validator reports them).
//!
//! Robustness: the tree is built with an explicit stack (no recursion, so no stack overflow
//! on `[[[[...`), nesting deeper than [`MAX_DEPTH`] is skipped and reported, and the parser
//! is run under `catch_unwind` so that a bug in it becomes a [`Problem`], never a crash.

use super::Problem;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting kept. The pool format needs 3 levels (pool / replicas / list); anything
/// far deeper is a mistake and is skipped (this also bounds recursion when dropping).
pub(super) const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone)]
pub(super) struct Node {
    /// 1-based line the node starts on.
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// A scalar as written (after YAML unquoting); `plain` when it was not quoted.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Key/value pairs in file order, duplicates included.
    Map(Vec<(Node, Node)>),
    /// `*alias` or a subtree nested too deeply: already reported while parsing.
    Invalid,
}

impl Node {
    /// `key:` with nothing after it. Unlike YAML's core schema, `~` and `null` are not
    /// null here: twemproxy reads every value as text (`redis_auth: null` is the password
    /// "null" there), and so do we.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if text.is_empty())
    }

    /// The scalar's text, when this is a non-null scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// What this node is, for messages: "a list", "a mapping", ...
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "nothing".to_string(),
            Kind::Scalar { text, .. } => format!("`{}`", super::clip(text)),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
            Kind::Invalid => "an invalid value".to_string(),
        }
    }
}

/// What [`parse`] found.
pub(super) struct Parsed {
    /// The document's root; `None` when the stream holds no document at all (an empty
    /// file, only comments) or on a syntax error.
    pub root: Option<Node>,
    /// Structural problems (aliases, nesting too deep, a second document) found while
    /// building; the tree is still usable and validated.
    pub problems: Vec<Problem>,
}

/// Parses one YAML document. `Err`: a YAML syntax error, after which the parser cannot
/// go on (a partial tree would only produce bogus follow-up problems).
pub(super) fn parse(text: &str) -> Result<Parsed, Problem> {
    match std::panic::catch_unwind(|| build(text)) {
        Ok(result) => result,
        Err(_) => Err(Problem {
            line: 0,
            message: "the YAML parser failed on this input (internal error); please report it"
                .to_string(),
        }),
    }
}

enum Frame {
    Seq {
        line: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        pairs: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    problems: Vec<Problem>,
    /// > 0 while skipping a subtree nested deeper than MAX_DEPTH: its own depth.
    skipping: usize,
    skip_line: usize,
}

impl Builder {
    /// Attaches a finished node to its parent (or makes it the root).
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { pairs, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let mut node = node;
                    // `key:` with no value: the parser marks the empty value where the next
                    // token starts (often the next line); the key's line is the useful one.
                    if matches!(&node.kind, Kind::Scalar { text, plain: true } if text.is_empty()) {
                        node.line = k.line;
                    }
                    pairs.push((k, node));
                }
            },
        }
    }

    fn open(&mut self, frame: Frame, line: usize) {
        if self.skipping > 0 || self.stack.len() >= MAX_DEPTH {
            if self.skipping == 0 {
                self.skip_line = line;
            }
            self.skipping += 1;
        } else {
            self.stack.push(frame);
        }
    }

    fn close(&mut self) {
        if self.skipping > 0 {
            self.skipping -= 1;
            if self.skipping == 0 {
                self.problems.push(Problem {
                    line: self.skip_line,
                    message: format!(
                        "nested more than {MAX_DEPTH} levels deep; the pool format has at most 3"
                    ),
                });
                let line = self.skip_line;
                self.push(Node {
                    line,
                    kind: Kind::Invalid,
                });
            }
            return;
        }
        let node = match self.stack.pop() {
            Some(Frame::Seq { line, items }) => Node {
                line,
                kind: Kind::Seq(items),
            },
            Some(Frame::Map {
                line,
                mut pairs,
                key,
            }) => {
                // A key with no value cannot happen in a well-formed stream; keep it anyway.
                if let Some(k) = key {
                    let line = k.line;
                    pairs.push((
                        k,
                        Node {
                            line,
                            kind: Kind::Scalar {
                                text: String::new(),
                                plain: true,
                            },
                        },
                    ));
                }
                Node {
                    line,
                    kind: Kind::Map(pairs),
                }
            }
            None => return,
        };
        self.push(node);
    }
}

fn line_of(mark: &Marker) -> usize {
    mark.line().max(1)
}

fn build(text: &str) -> Result<Parsed, Problem> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        stack: Vec::new(),
        root: None,
        problems: Vec::new(),
        skipping: 0,
        skip_line: 0,
    };
    let mut documents = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                let line = line_of(m);
                // A tab in indentation is reported where the scanner was (often the line
                // before); point at the tab itself.
                if e.info().contains("tab") {
                    let tabbed = text.lines().enumerate().skip(line - 1).find(|(_, l)| {
                        l.chars()
                            .take_while(|c| c.is_whitespace())
                            .any(|c| c == '\t')
                    });
                    if let Some((i, _)) = tabbed {
                        return Err(Problem {
                            line: i + 1,
                            message: "YAML syntax error: a tab in the indentation (YAML indents with spaces only)"
                                .to_string(),
                        });
                    }
                }
                return Err(Problem {
                    line,
                    message: format!("YAML syntax error at column {}: {}", m.col() + 1, e.info()),
                });
            }
        };
        let line = line_of(&mark);
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    // twemproxy: "must contain only 1 document". Stop here: the rest is
                    // another document we will not read.
                    b.problems.push(Problem {
                        line,
                        message: "a second YAML document starts here (`---`); the file must hold exactly one".to_string(),
                    });
                    break;
                }
            }
            Event::Alias(_) => {
                if b.skipping == 0 {
                    b.problems.push(Problem {
                        line,
                        message: "YAML aliases (`*name`) are not supported in this file (twemproxy rejects them too)".to_string(),
                    });
                    b.push(Node {
                        line,
                        kind: Kind::Invalid,
                    });
                }
            }
            Event::Scalar(text, style, _, _) => {
                if b.skipping == 0 {
                    b.push(Node {
                        line,
                        kind: Kind::Scalar {
                            text,
                            plain: style == TScalarStyle::Plain,
                        },
                    });
                }
            }
            Event::SequenceStart(..) => b.open(
                Frame::Seq {
                    line,
                    items: Vec::new(),
                },
                line,
            ),
            Event::MappingStart(..) => b.open(
                Frame::Map {
                    line,
                    pairs: Vec::new(),
                    key: None,
                },
                line,
            ),
            Event::SequenceEnd | Event::MappingEnd => b.close(),
        }
    }
    Ok(Parsed {
        root: b.root,
        problems: b.problems,
    })
}
