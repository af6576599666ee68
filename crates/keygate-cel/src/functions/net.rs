//! IP helpers: `inCidrRange(ip, cidr)`, `inCidrRanges(ip, cidrs)`, `isPrivateIp(ip)`.

use std::net::IpAddr;

use cel::common::types::{CelBool, CelString, LIST_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};
use ipnet::IpNet;

use super::{global_and_member, str_arg};

/// Parses an address, turning IPv4-mapped IPv6 (`::ffff:a.b.c.d`) into IPv4.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim()
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

/// A CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address; `None` if invalid.
fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| parse_ip(text).map(IpNet::from))
}

fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpNet::V6(v6), IpAddr::V4(v4)) => v6.contains(&v4.to_ipv6_mapped()),
        _ => net.contains(&ip),
    }
}

/// `inCidrRange(ip, cidr)`: false when the ip or the cidr is invalid.
fn in_cidr_range<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [ip, cidr] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let ip = parse_ip(str_arg("inCidrRange", ip.as_ref())?);
    let net = parse_net(str_arg("inCidrRange", cidr.as_ref())?);
    let inside = matches!((ip, net), (Some(ip), Some(net)) if net_contains(&net, ip));
    Ok(CowVal::owned(CelBool::from(inside)))
}

/// `inCidrRanges(ip, [cidr, ...])`: true if in any valid range; invalid entries are ignored.
fn in_cidr_ranges<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [ip, cidrs] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let Some(ip) = parse_ip(str_arg("inCidrRanges", ip.as_ref())?) else {
        return Ok(CowVal::owned(CelBool::from(false)));
    };
    let cidrs = cidrs.as_iterable().ok_or_else(|| {
        ExecutionError::function_error("inCidrRanges", "expected a list of CIDR strings")
    })?;
    let mut items = cidrs.iter();
    let mut inside = false;
    while let Some(item) = items.next() {
        let net = item
            .downcast_ref::<CelString>()
            .and_then(|cidr| parse_net(cidr.inner()));
        if net.is_some_and(|net| net_contains(&net, ip)) {
            inside = true;
            break;
        }
    }
    Ok(CowVal::owned(CelBool::from(inside)))
}

/// `isPrivateIp(ip)` / `ip.isPrivateIp()`: RFC 1918 IPv4 ranges (IPv4-mapped IPv6 included).
fn is_private_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [ip] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(1, args.len()));
    };
    let private = matches!(
        parse_ip(str_arg("isPrivateIp", ip.as_ref())?),
        Some(IpAddr::V4(v4)) if v4.is_private()
    );
    Ok(CowVal::owned(CelBool::from(private)))
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(
        "inCidrRange",
        "inCidrRange(string,string)",
        vec![STRING_TYPE, STRING_TYPE],
        in_cidr_range,
    )?;
    env.add_overload(
        "inCidrRanges",
        "inCidrRanges(string,list)",
        vec![STRING_TYPE, LIST_TYPE],
        in_cidr_ranges,
    )?;
    global_and_member(
        env,
        "isPrivateIp",
        "isPrivateIp",
        &[STRING_TYPE],
        is_private_ip,
    )?;
    Ok(())
}
