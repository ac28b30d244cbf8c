//! One EC2 Fleet request of type `instant` per market over all of a launch's pools, and what
//! its answer means.
//!
//! The request asks for one instance with `price-capacity-optimized` (spot) over every
//! (instance type, subnet) pool of the plan as launch template overrides: EC2 picks the
//! deepest pools, then the cheapest of those. The on-demand fallback is a second request
//! over the same pools with on-demand target capacity, sent only when the spot one gave
//! nothing. An `instant` fleet answers HTTP 200 with the instances it started and, in the
//! same answer, an `Errors` list (one entry per pool that failed, or one for the request):
//! no capacity is an answer without instances, not an exception.

use crate::capacity::{self, LaunchAnswer, Market, Pool};

/// One pool of a fleet request (a launch template override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub instance_type: String,
    pub subnet_id: String,
}

/// One `instant` fleet request for one instance in one market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRequest {
    /// The stack's launch template (id): security group, shutdown behaviour, metadata
    /// options and the generic watchdog.
    pub launch_template: String,
    pub market: Market,
    pub overrides: Vec<Override>,
    /// Every override's image, root volume and instance profile (name or ARN; empty: none).
    pub image_id: String,
    pub root_volume_gb: u32,
    pub instance_profile: String,
    /// The instance's tags (the watchdog reads `spotstep:max-runtime` from them).
    pub tags: Vec<(String, String)>,
    /// The idempotency token: see [`client_token`].
    pub client_token: String,
}

/// The markets a plan asks, in order (spot first), each with its pools as overrides.
pub fn requests_of(pools: &[Pool]) -> Vec<(Market, Vec<Override>)> {
    let mut out: Vec<(Market, Vec<Override>)> = Vec::new();
    for pool in pools {
        let entry = match out.iter_mut().find(|(m, _)| *m == pool.market) {
            Some(entry) => entry,
            None => {
                out.push((pool.market, Vec::new()));
                out.last_mut().expect("just pushed")
            }
        };
        entry.1.push(Override {
            instance_type: pool.instance_type.clone(),
            subnet_id: pool.subnet_id.clone(),
        });
    }
    out
}

/// The client token of a fleet request: derived from the execution, the launch's attempt
/// and generation (how many earlier tries of it ended) and every parameter of the request.
/// A retry of the same request reuses it (EC2 answers it idempotently, with the same
/// instances); a changed request gets another one, so EC2 never sees a token reused with
/// changed parameters (`IdempotentParameterMismatch`). The generation matters because EC2
/// keeps a token bound to its instance for at least 24 hours after it terminates: a try
/// after a launch that terminated itself needs a new one.
pub fn client_token(
    execution: &str,
    attempt: u32,
    generation: usize,
    request: &FleetRequest,
) -> String {
    let FleetRequest {
        launch_template,
        market,
        overrides,
        image_id,
        root_volume_gb,
        instance_profile,
        tags,
        client_token: _,
    } = request;
    let mut key = format!(
        "{execution}|{attempt}|{generation}|{launch_template}|{}|{image_id}|{root_volume_gb}|{instance_profile}",
        market.as_str()
    );
    for o in overrides {
        key.push_str(&format!("|{}@{}", o.instance_type, o.subnet_id));
    }
    for (k, v) in tags {
        key.push_str(&format!("|{k}={v}"));
    }
    crate::naming::client_token(&key)
}

/// An instance the fleet started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetInstance {
    pub instance_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    /// Empty when the answer does not say (EC2 then shows it on the instance).
    pub availability_zone: String,
    pub spot: bool,
}

/// One entry of the answer's `Errors`: a pool's (or, without a pool, the request's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetError {
    pub code: String,
    pub message: String,
    /// The override it concerns (empty for the whole request).
    pub instance_type: String,
    pub subnet_id: String,
}

/// A CreateFleet answer: instances and errors can come together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetAnswer {
    pub instances: Vec<FleetInstance>,
    pub errors: Vec<FleetError>,
}

/// What an answer means for the launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An instance started (the answer's errors, if any, concern other pools: logged).
    Started(FleetInstance),
    /// No pool had capacity in this market: the next market, or `NoCapacity`.
    NoCapacity,
    /// A quota (such as the spot vCPU limit): on-demand may still do.
    Quota(FleetError),
    /// EC2 throttled the request (`RequestLimitExceeded` inside `Errors`): back off and
    /// send the same request again.
    Throttled,
    /// The request itself was refused (permissions, parameters, a token reused with other
    /// parameters): stop, this is not a capacity wait.
    Rejected(FleetError),
}

/// Codes that say the caller may not launch: never a capacity answer.
pub fn is_unauthorized(code: &str) -> bool {
    matches!(
        code,
        "UnauthorizedOperation"
            | "AccessDenied"
            | "AccessDeniedException"
            | "AuthFailure"
            | "Blocked"
            | "OptInRequired"
    )
}

/// Reads an answer: an instance wins whatever errors came with it; otherwise the gravest
/// error decides (rejected, then throttled, then quota, then no capacity).
pub fn read(answer: &FleetAnswer) -> Outcome {
    if let Some(instance) = answer.instances.first() {
        return Outcome::Started(instance.clone());
    }
    let rejected = answer.errors.iter().find(|e| {
        is_unauthorized(&e.code)
            || !crate::error::is_throttling(&e.code)
                && capacity::classify_launch_error(&e.code) == LaunchAnswer::Rejected
    });
    if let Some(e) = rejected {
        return Outcome::Rejected(e.clone());
    }
    if answer
        .errors
        .iter()
        .any(|e| crate::error::is_throttling(&e.code))
    {
        return Outcome::Throttled;
    }
    if let Some(e) = answer
        .errors
        .iter()
        .find(|e| capacity::classify_launch_error(&e.code) == LaunchAnswer::Quota)
    {
        return Outcome::Quota(e.clone());
    }
    Outcome::NoCapacity
}

/// How long the launch waits before sending a throttled fleet request again; after the
/// last pause it fails `Throttled` (the state machine's retry).
pub const THROTTLE_PAUSES_SECONDS: [u64; 3] = [1, 2, 4];

/// What the operator reads when EC2 refused the request itself.
pub fn rejected_message(error: &FleetError, market: Market) -> String {
    let what = if is_unauthorized(&error.code) {
        "the launch function is not allowed to launch (check its IAM policy and the stack's \
         launch template, instance profile and subnets)"
    } else if error.code == "IdempotentParameterMismatch" {
        "EC2 saw this launch's client token with other parameters (the token is derived from \
         the request, so the deployment changed under a retry)"
    } else {
        "the request is wrong (deployment settings or job manifest)"
    };
    let pool = if error.instance_type.is_empty() {
        String::new()
    } else {
        format!(" in {}@{}", error.instance_type, error.subnet_id)
    };
    format!(
        "EC2 rejected the {} fleet launch{pool}: {}: {}; {what}. This is not a capacity \
         wait: nothing is running. Fix it, then redrive",
        market.as_str(),
        error.code,
        error.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> Vec<Pool> {
        let types = vec!["c5.large".to_string(), "m5.large".to_string()];
        let subnets = vec!["a".to_string(), "b".to_string()];
        capacity::plan(&types, None, &subnets, true)
    }

    fn request(market: Market, overrides: Vec<Override>) -> FleetRequest {
        FleetRequest {
            launch_template: "lt-1".into(),
            market,
            overrides,
            image_id: "ami-1".into(),
            root_volume_gb: 8,
            instance_profile: "p".into(),
            tags: vec![("spotstep:max-runtime".into(), "1800".into())],
            client_token: String::new(),
        }
    }

    fn error(code: &str, pool: Option<(&str, &str)>) -> FleetError {
        let (t, s) = pool.unwrap_or(("", ""));
        FleetError {
            code: code.into(),
            message: format!("{code} (test)"),
            instance_type: t.into(),
            subnet_id: s.into(),
        }
    }

    fn started() -> FleetInstance {
        FleetInstance {
            instance_id: "i-1".into(),
            instance_type: "m5.large".into(),
            subnet_id: "b".into(),
            availability_zone: String::new(),
            spot: true,
        }
    }

    #[test]
    fn one_request_per_market_over_every_pool() {
        let requests = requests_of(&pools());
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].0, Market::Spot);
        assert_eq!(requests[1].0, Market::OnDemand);
        let names: Vec<String> = requests[0]
            .1
            .iter()
            .map(|o| format!("{}@{}", o.instance_type, o.subnet_id))
            .collect();
        assert_eq!(
            names,
            ["c5.large@a", "c5.large@b", "m5.large@a", "m5.large@b"]
        );
        assert_eq!(requests[0].1, requests[1].1);
        let spot_only = capacity::plan(&["t3.micro".to_string()], None, &["a".to_string()], false);
        assert_eq!(requests_of(&spot_only).len(), 1);
    }

    #[test]
    fn same_request_same_token_changed_request_new_token() {
        let overrides = requests_of(&pools()).remove(0).1;
        let r = request(Market::Spot, overrides.clone());
        let token = client_token("arn:x", 1, 0, &r);
        assert_eq!(token, client_token("arn:x", 1, 0, &r.clone()));
        assert!(token.len() <= 64);
        assert_ne!(token, client_token("arn:x", 2, 0, &r));
        assert_ne!(token, client_token("arn:x", 1, 1, &r));
        assert_ne!(token, client_token("arn:y", 1, 0, &r));
        let on_demand = request(Market::OnDemand, overrides.clone());
        assert_ne!(token, client_token("arn:x", 1, 0, &on_demand));
        let fewer = request(Market::Spot, overrides[..2].to_vec());
        assert_ne!(token, client_token("arn:x", 1, 0, &fewer));
        let mut bigger = r.clone();
        bigger.root_volume_gb = 16;
        assert_ne!(token, client_token("arn:x", 1, 0, &bigger));
        let mut longer = r.clone();
        longer.tags[0].1 = "3600".into();
        assert_ne!(token, client_token("arn:x", 1, 0, &longer));
        let mut tokened = r.clone();
        tokened.client_token = "ignored".into();
        assert_eq!(token, client_token("arn:x", 1, 0, &tokened));
    }

    #[test]
    fn an_instance_wins_over_the_errors_of_other_pools() {
        let answer = FleetAnswer {
            instances: vec![started()],
            errors: vec![
                error("InsufficientInstanceCapacity", Some(("c5.large", "a"))),
                error("RequestLimitExceeded", None),
            ],
        };
        assert_eq!(read(&answer), Outcome::Started(started()));
    }

    #[test]
    fn only_capacity_errors_are_no_capacity() {
        for code in [
            "InsufficientInstanceCapacity",
            "UnfulfillableCapacity",
            "MaxSpotInstanceCountExceeded",
        ] {
            let answer = FleetAnswer {
                instances: vec![],
                errors: vec![error(code, Some(("c5.large", "a")))],
            };
            assert_eq!(read(&answer), Outcome::NoCapacity, "{code}");
        }
        assert_eq!(read(&FleetAnswer::default()), Outcome::NoCapacity);
    }

    #[test]
    fn request_limit_exceeded_in_errors_is_throttled() {
        let answer = FleetAnswer {
            instances: vec![],
            errors: vec![
                error("InsufficientInstanceCapacity", Some(("c5.large", "a"))),
                error("RequestLimitExceeded", Some(("c5.large", "b"))),
            ],
        };
        assert_eq!(read(&answer), Outcome::Throttled);
    }

    #[test]
    fn unauthorized_is_rejected_even_beside_capacity_errors() {
        for code in ["UnauthorizedOperation", "AccessDenied", "AuthFailure"] {
            let answer = FleetAnswer {
                instances: vec![],
                errors: vec![
                    error("InsufficientInstanceCapacity", Some(("c5.large", "a"))),
                    error(code, None),
                    error("RequestLimitExceeded", None),
                ],
            };
            let Outcome::Rejected(e) = read(&answer) else {
                panic!("{code} read as {:?}", read(&answer));
            };
            assert_eq!(e.code, code);
            let message = rejected_message(&e, Market::Spot);
            assert!(message.contains("not allowed to launch"), "{message}");
            assert!(message.contains("not a capacity wait"), "{message}");
        }
    }

    #[test]
    fn a_token_reused_with_other_parameters_is_rejected_with_its_reason() {
        let answer = FleetAnswer {
            instances: vec![],
            errors: vec![error("IdempotentParameterMismatch", None)],
        };
        let Outcome::Rejected(e) = read(&answer) else {
            panic!("{:?}", read(&answer));
        };
        let message = rejected_message(&e, Market::OnDemand);
        assert!(
            message.contains("client token with other parameters"),
            "{message}"
        );
        assert!(message.contains("on-demand fleet launch"), "{message}");
    }

    #[test]
    fn a_quota_lets_the_on_demand_request_try() {
        let answer = FleetAnswer {
            instances: vec![],
            errors: vec![
                error("VcpuLimitExceeded", Some(("c5.large", "a"))),
                error("InsufficientInstanceCapacity", Some(("c5.large", "b"))),
            ],
        };
        assert_eq!(
            read(&answer),
            Outcome::Quota(error("VcpuLimitExceeded", Some(("c5.large", "a"))))
        );
    }
}
