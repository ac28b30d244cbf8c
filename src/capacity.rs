//! Capacity plans: which pools a launch asks, in which order, and what each answer means.
//!
//! A pool is one instance type in one subnet (one availability zone) in one market. Spot
//! pools are asked type by type across every subnet, as today's script does; on-demand pools
//! follow only when the job allows the fallback.

/// One capacity pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub instance_type: String,
    pub subnet_id: String,
    pub market: Market,
}

/// Spot or on-demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Market {
    Spot,
    OnDemand,
}

impl Market {
    pub fn as_str(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::OnDemand => "on-demand",
        }
    }
}

/// The pools to ask, in order: each type (or only the pinned one) across every subnet, spot
/// first, then the same pools on demand when `on_demand_fallback` is set.
pub fn plan(
    types: &[String],
    pinned: Option<&str>,
    subnets: &[String],
    on_demand_fallback: bool,
) -> Vec<Pool> {
    let types: Vec<&str> = match pinned {
        Some(t) => vec![t],
        None => types.iter().map(String::as_str).collect(),
    };
    let markets: &[Market] = if on_demand_fallback {
        &[Market::Spot, Market::OnDemand]
    } else {
        &[Market::Spot]
    };
    markets
        .iter()
        .flat_map(|&market| {
            types.iter().flat_map(move |t| {
                subnets.iter().map(move |s| Pool {
                    instance_type: t.to_string(),
                    subnet_id: s.clone(),
                    market,
                })
            })
        })
        .collect()
}

/// The pools of a launch after `reclaims` spot reclaims in the run: once the job's
/// `on_demand_after_reclaims` is reached, the same types and subnets on demand only;
/// before, [`plan`].
pub fn plan_after_reclaims(
    types: &[String],
    pinned: Option<&str>,
    subnets: &[String],
    on_demand_fallback: bool,
    reclaims: u32,
    on_demand_after: Option<u32>,
) -> Vec<Pool> {
    if on_demand_after.is_some_and(|n| reclaims >= n) {
        let mut pools = plan(types, pinned, subnets, true);
        pools.retain(|p| p.market == Market::OnDemand);
        pools
    } else {
        plan(types, pinned, subnets, on_demand_fallback)
    }
}

/// What a launch error code means for the rest of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchAnswer {
    /// This pool has no capacity: ask the next one.
    NoCapacity,
    /// A quota (such as the spot vCPU limit): no spot pool will do; on-demand pools may.
    Quota,
    /// Anything else: the request itself is wrong; stop.
    Rejected,
}

/// Classifies an EC2 launch error code.
pub fn classify_launch_error(code: &str) -> LaunchAnswer {
    match code {
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientCapacity"
        | "SpotMaxPriceTooLow"
        | "MaxSpotInstanceCountExceeded"
        | "Unsupported"
        | "InvalidAvailabilityZone"
        | "UnfulfillableCapacity" => LaunchAnswer::NoCapacity,
        "VcpuLimitExceeded" | "InstanceLimitExceeded" => LaunchAnswer::Quota,
        _ => LaunchAnswer::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pools: &[Pool]) -> Vec<String> {
        pools
            .iter()
            .map(|p| format!("{}@{}/{}", p.instance_type, p.subnet_id, p.market.as_str()))
            .collect()
    }

    #[test]
    fn type_by_type_across_subnets() {
        let types = vec!["c5.large".to_string(), "m5.large".to_string()];
        let subnets = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(
            names(&plan(&types, None, &subnets, false)),
            [
                "c5.large@a/spot",
                "c5.large@b/spot",
                "c5.large@c/spot",
                "m5.large@a/spot",
                "m5.large@b/spot",
                "m5.large@c/spot"
            ]
        );
    }

    #[test]
    fn pinned_type_and_on_demand_fallback() {
        let types = vec!["c5.large".to_string(), "m5.large".to_string()];
        let subnets = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            names(&plan(&types, Some("c6i.large"), &subnets, true)),
            [
                "c6i.large@a/spot",
                "c6i.large@b/spot",
                "c6i.large@a/on-demand",
                "c6i.large@b/on-demand"
            ]
        );
    }

    #[test]
    fn on_demand_after_the_reclaim_budget_in_the_same_pools() {
        let types = vec!["g5.xlarge".to_string(), "g6.xlarge".to_string()];
        let subnets = vec!["a".to_string(), "b".to_string()];
        let spot = names(&plan(&types, None, &subnets, false));
        for (reclaims, after, expected_spot) in [
            (0, None, true),
            (5, None, true),
            (0, Some(1), true),
            (1, Some(1), false),
            (3, Some(2), false),
        ] {
            let pools = names(&plan_after_reclaims(
                &types, None, &subnets, false, reclaims, after,
            ));
            if expected_spot {
                assert_eq!(pools, spot, "{reclaims} {after:?}");
            } else {
                assert_eq!(
                    pools,
                    [
                        "g5.xlarge@a/on-demand",
                        "g5.xlarge@b/on-demand",
                        "g6.xlarge@a/on-demand",
                        "g6.xlarge@b/on-demand"
                    ],
                    "{reclaims} {after:?}"
                );
            }
        }
    }

    #[test]
    fn launch_errors() {
        for code in [
            "InsufficientInstanceCapacity",
            "InsufficientHostCapacity",
            "SpotMaxPriceTooLow",
            "MaxSpotInstanceCountExceeded",
            "Unsupported",
            "InvalidAvailabilityZone",
            "UnfulfillableCapacity",
        ] {
            assert_eq!(
                classify_launch_error(code),
                LaunchAnswer::NoCapacity,
                "{code}"
            );
        }
        assert_eq!(
            classify_launch_error("VcpuLimitExceeded"),
            LaunchAnswer::Quota
        );
        assert_eq!(
            classify_launch_error("InvalidParameterValue"),
            LaunchAnswer::Rejected
        );
        assert_eq!(
            classify_launch_error("UnauthorizedOperation"),
            LaunchAnswer::Rejected
        );
    }
}
