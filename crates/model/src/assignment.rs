//! Assignments: a container spec the managers hand, over each agent's
//! session, to every node that matches its placement constraints. The
//! agent runs one container for it, keeps it running, and reports its
//! state back. It is the dispatcher's unit of work: services, in a later
//! stop, are made of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::NodeRole;

/// `POST /v1/assignments`: what to run, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignmentSpec {
    /// Unique in the cluster: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 63 characters.
    pub name: String,
    /// The image reference each node runs (pulled when the node lacks it).
    pub image: String,
    /// Replaces the image's Cmd when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// `K=V` entries added to the image's Env.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Placement constraints, all of which a node must meet (see
    /// [`Constraint`]); none: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
}

/// The most constraints, env entries or arguments an assignment takes.
pub const MAX_LIST: usize = 64;

impl AssignmentSpec {
    /// Checks everything a manager checks before it records the spec.
    pub fn check(&self) -> Result<(), String> {
        let n = &self.name;
        let valid = !n.is_empty()
            && n.len() <= 63
            && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(format!(
                "invalid assignment name {n:?}: 1 to 63 of [a-zA-Z0-9_.-], starting with a letter or digit"
            ));
        }
        if self.image.trim().is_empty() {
            return Err("an assignment needs an image".into());
        }
        crate::reference::Reference::parse(&self.image)
            .map_err(|e| format!("invalid image reference {:?}: {e}", self.image))?;
        for (what, list) in [
            ("arguments", &self.cmd),
            ("env entries", &self.env),
            ("constraints", &self.constraints),
        ] {
            if list.len() > MAX_LIST {
                return Err(format!("at most {MAX_LIST} {what} (got {})", list.len()));
            }
            if list.iter().any(|s| s.len() > 4096 || s.contains('\0')) {
                return Err(format!("one of the {what} is longer than 4096 bytes or holds a NUL"));
            }
        }
        for e in &self.env {
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() => {}
                _ => return Err(format!("invalid env entry {e:?}: use KEY=VALUE")),
            }
        }
        for c in &self.constraints {
            c.parse::<Constraint>()?;
        }
        Ok(())
    }

    /// Whether a node meets every constraint.
    pub fn places_on(&self, node: &NodeFacts<'_>) -> bool {
        self.constraints
            .iter()
            .all(|c| c.parse::<Constraint>().is_ok_and(|c| c.matches(node)))
    }
}

/// What a placement constraint can look at.
pub struct NodeFacts<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub role: NodeRole,
    pub labels: &'a BTreeMap<String, String>,
}

/// `FIELD==VALUE` or `FIELD!=VALUE`, where FIELD is `node.id`,
/// `node.hostname`, `node.role` or `node.labels.KEY`. A label the node
/// does not have is unequal to every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub field: ConstraintField,
    pub equal: bool,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintField {
    Id,
    Hostname,
    Role,
    Label(String),
}

impl std::str::FromStr for Constraint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (field, equal, value) = match (s.split_once("=="), s.split_once("!=")) {
            (Some((f, v)), None) => (f, true, v),
            (None, Some((f, v))) => (f, false, v),
            _ => {
                return Err(format!(
                    "invalid constraint {s:?}: use FIELD==VALUE or FIELD!=VALUE (for example node.labels.zone==a)"
                ))
            }
        };
        let (field, value) = (field.trim(), value.trim());
        if value.is_empty() {
            return Err(format!("invalid constraint {s:?}: the value is empty"));
        }
        let field = match field {
            "node.id" => ConstraintField::Id,
            "node.hostname" => ConstraintField::Hostname,
            "node.role" => {
                value
                    .parse::<NodeRole>()
                    .map_err(|e| format!("invalid constraint {s:?}: {e}"))?;
                ConstraintField::Role
            }
            other => match other.strip_prefix("node.labels.") {
                Some(key) if !key.is_empty() => ConstraintField::Label(key.to_string()),
                _ => {
                    return Err(format!(
                        "invalid constraint {s:?}: unknown field {other:?} (use node.id, node.hostname, node.role or node.labels.KEY)"
                    ))
                }
            },
        };
        Ok(Constraint {
            field,
            equal,
            value: value.to_string(),
        })
    }
}

impl Constraint {
    pub fn matches(&self, node: &NodeFacts<'_>) -> bool {
        let actual = match &self.field {
            ConstraintField::Id => Some(node.id),
            ConstraintField::Hostname => Some(node.hostname),
            ConstraintField::Role => Some(node.role.as_str()),
            ConstraintField::Label(k) => node.labels.get(k).map(String::as_str),
        };
        (actual == Some(self.value.as_str())) == self.equal
    }
}

/// An assignment as the API shows it: its spec, and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    #[serde(flatten)]
    pub spec: AssignmentSpec,
    /// RFC 3339.
    pub created_at: String,
    /// One entry per node that matches it now, and per node that still
    /// reports a container for it.
    pub tasks: Vec<AssignmentTask>,
}

/// One node's part of an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssignmentTask {
    pub node: String,
    pub hostname: String,
    /// `assigned` (sent, not reported on yet), `starting`, `running`,
    /// `exited`, `failed` (the node could not run it: see `message`) or
    /// `removing` (the node no longer matches).
    pub state: String,
    /// The container's id on that node, once it exists.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the node reported it (RFC 3339); absent while `assigned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<String>,
}

/// The label an agent puts on the containers it runs for an assignment
/// (its value: the assignment's name).
pub const ASSIGNMENT_LABEL: &str = "berth.assignment";

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(labels: &'a BTreeMap<String, String>) -> NodeFacts<'a> {
        NodeFacts {
            id: "0123456789abcdef",
            hostname: "h1",
            role: NodeRole::Worker,
            labels,
        }
    }

    #[test]
    fn constraints_match_fields_and_labels() {
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let node = facts(&labels);
        for (c, want) in [
            ("node.labels.zone==a", true),
            ("node.labels.zone!=a", false),
            ("node.labels.zone==b", false),
            ("node.labels.rack!=x", true),
            ("node.labels.rack==x", false),
            ("node.role==worker", true),
            ("node.role!=manager", true),
            ("node.hostname==h1", true),
            ("node.id==0123456789abcdef", true),
            (" node.hostname == h1 ", true),
        ] {
            let parsed: Constraint = c.parse().expect(c);
            assert_eq!(parsed.matches(&node), want, "{c}");
        }
    }

    #[test]
    fn bad_constraints_and_specs_are_refused_by_name() {
        for (c, says) in [
            ("zone=a", "use FIELD==VALUE"),
            ("node.labels.zone==", "the value is empty"),
            ("node.color==red", "unknown field \"node.color\""),
            ("node.labels.==a", "unknown field"),
            ("node.role==boss", "unknown node role"),
        ] {
            let e = c.parse::<Constraint>().expect_err(c);
            assert!(e.contains(says), "{c}: {e}");
        }
        let good = AssignmentSpec {
            name: "web".into(),
            image: "busybox:latest".into(),
            constraints: vec!["node.labels.zone==a".into()],
            ..Default::default()
        };
        good.check().expect("a good spec");
        for (spec, says) in [
            (
                AssignmentSpec {
                    name: "-x".into(),
                    ..good.clone()
                },
                "invalid assignment name",
            ),
            (
                AssignmentSpec {
                    name: "a".repeat(64),
                    ..good.clone()
                },
                "invalid assignment name",
            ),
            (
                AssignmentSpec {
                    image: " ".into(),
                    ..good.clone()
                },
                "needs an image",
            ),
            (
                AssignmentSpec {
                    image: "Bad Image".into(),
                    ..good.clone()
                },
                "invalid image reference",
            ),
            (
                AssignmentSpec {
                    env: vec!["NOEQUALS".into()],
                    ..good.clone()
                },
                "invalid env entry",
            ),
            (
                AssignmentSpec {
                    constraints: vec!["x".into()],
                    ..good.clone()
                },
                "invalid constraint",
            ),
            (
                AssignmentSpec {
                    cmd: vec!["a".into(); 65],
                    ..good.clone()
                },
                "at most 64 arguments",
            ),
        ] {
            let e = spec.check().expect_err(says);
            assert!(e.contains(says), "{e}");
        }
    }
}
