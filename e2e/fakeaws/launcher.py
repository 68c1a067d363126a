#!/usr/bin/env python3
"""moto as the fake AWS of the karpenter-rs e2e bed, seeded with an EKS-like account.

Started (detached) by `cargo xtask aws up` from the venv the xtask manages; never shipped.

What it adds to a plain moto server, before reporting ready:
  * the EKS optimized AMI SSM parameters (AL2, AL2023, Bottlerocket) for Kubernetes 1.20 (the local control plane) and 1.28-1.33,
    each pointing at an AMI registered in moto with an EKS-like name and the right architecture
    (moto has none of them, and PutParameter under /aws/ is refused, as on AWS, so they are written
    into moto's SSM backend directly);
  * a VPC with four discovery-tagged private subnets of different sizes (a big one in each of
    us-east-1a/b/c and a small second one in us-east-1a), three
    untagged public subnets, a discovery-tagged node security group and the SQS interruption queue
    named after the cluster (created with boto3 against the server itself);
  * DescribeSpotPriceHistory prices at 30-50 % of the catalog's on-demand prices, per type and zone
    (moto says $0.00001 for everything);
  * CreateFleet instances get the launch template's `SecurityGroupIds` (moto only read `GroupSet`);
  * `POST /moto-api/karpenter/release-ami` with {"parameter": name} registers a new image and points
    the SSM parameter at it (a new EKS AMI release: the drift tests use it);
  * `POST /moto-api/reset` resets moto and then re-seeds the same account with the same ids (moto's
    random generator is re-seeded first), so tests can return to a clean account cheaply.

Then it writes `aws.json` (schema: `AwsInfo` in e2e/src/env.rs) into the state directory, prints
`ready`, and serves until SIGTERM/SIGINT.
"""

import argparse
import datetime
import json
import os
import signal
import sys
import threading
import zlib

import boto3
from botocore.config import Config
from werkzeug.serving import make_server
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.models.spot_requests import SpotFleetLaunchSpec
from moto.ec2.responses.spot_instances import SpotInstances
from moto.core.responses import ActionResult
from moto.ec2.utils import random_ami_id
from moto.moto_api._internal import mock_random
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sqs.models import sqs_backends
from moto.ssm.models import Parameter, ssm_backends

# 1.20 is the local control plane's own version (`cargo xtask cluster`): AMI aliases resolve
# through the parameters of the cluster's version, as on EKS.
K8S_VERSIONS = ["1.20", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"]
EKS_RELEASE = "v20241024"
BOTTLEROCKET_RELEASE = "v1.26.1-943d9a41"
# Owners of the public AMIs on AWS: EKS (602401143452) and Bottlerocket (092701018921).
EKS_OWNER = "602401143452"
BOTTLEROCKET_OWNER = "092701018921"
# The controller's embedded catalog: on-demand list prices, from which spot prices derive.
CATALOG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "providers", "data", "aws-catalog-us-east-1.json"
)
# `POST` {"parameter": "/aws/service/eks/…/image_id"} publishes a new AMI release behind it.
RELEASE_AMI_PATH = "/moto-api/karpenter/release-ami"
# Fixed seed of moto's id generator: the same seed + the same calls give the same ids after a reset.
ID_SEED = 20241024

# (SSM parameter template, AMI name template, architecture, owner); {k} is the Kubernetes version.
AMI_FAMILIES = [
    (
        "/aws/service/eks/optimized-ami/{k}/amazon-linux-2/recommended/image_id",
        "amazon-eks-node-{k}-" + EKS_RELEASE,
        "x86_64",
        EKS_OWNER,
    ),
    (
        "/aws/service/eks/optimized-ami/{k}/amazon-linux-2-arm64/recommended/image_id",
        "amazon-eks-arm64-node-{k}-" + EKS_RELEASE,
        "arm64",
        EKS_OWNER,
    ),
    (
        "/aws/service/eks/optimized-ami/{k}/amazon-linux-2-gpu/recommended/image_id",
        "amazon-eks-gpu-node-{k}-" + EKS_RELEASE,
        "x86_64",
        EKS_OWNER,
    ),
    (
        "/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/x86_64/standard/recommended/image_id",
        "amazon-eks-node-al2023-x86_64-standard-{k}-" + EKS_RELEASE,
        "x86_64",
        EKS_OWNER,
    ),
    (
        "/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/arm64/standard/recommended/image_id",
        "amazon-eks-node-al2023-arm64-standard-{k}-" + EKS_RELEASE,
        "arm64",
        EKS_OWNER,
    ),
    (
        "/aws/service/eks/optimized-ami/{k}/amazon-linux-2023/x86_64/nvidia/recommended/image_id",
        "amazon-eks-node-al2023-x86_64-nvidia-{k}-" + EKS_RELEASE,
        "x86_64",
        EKS_OWNER,
    ),
    (
        "/aws/service/bottlerocket/aws-k8s-{k}/x86_64/latest/image_id",
        "bottlerocket-aws-k8s-{k}-x86_64-" + BOTTLEROCKET_RELEASE,
        "x86_64",
        BOTTLEROCKET_OWNER,
    ),
    (
        "/aws/service/bottlerocket/aws-k8s-{k}/arm64/latest/image_id",
        "bottlerocket-aws-k8s-{k}-aarch64-" + BOTTLEROCKET_RELEASE,
        "arm64",
        BOTTLEROCKET_OWNER,
    ),
    (
        "/aws/service/bottlerocket/aws-k8s-{k}-nvidia/x86_64/latest/image_id",
        "bottlerocket-aws-k8s-{k}-nvidia-x86_64-" + BOTTLEROCKET_RELEASE,
        "x86_64",
        BOTTLEROCKET_OWNER,
    ),
]

# Private subnets of different sizes so "most free IPs" matters; generous, because a full subnet
# makes moto answer HTTP 500 and terminated instances never give their IPs back.
PRIVATE_SUBNETS = [("a", "10.0.0.0/19"), ("b", "10.0.32.0/20"), ("c", "10.0.48.0/21")]
# A second, small private subnet in zone a, created before the big one so DescribeSubnets lists
# it first there: picking "the first subnet of a zone" instead of "the most free IPs" shows.
SMALL_PRIVATE_SUBNET = ("a", "10.0.72.0/23")
PUBLIC_SUBNETS = [("a", "10.0.64.0/24"), ("b", "10.0.65.0/24"), ("c", "10.0.66.0/24")]


def log(message):
    print(f"launcher: {message}", flush=True)


def seed_amis_and_parameters(region):
    """Registers the EKS-like AMIs in moto's EC2 backend and points the SSM parameters at them."""
    ec2 = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    ssm = ssm_backends[DEFAULT_ACCOUNT_ID][region]
    created = datetime.datetime(2024, 10, 24, tzinfo=datetime.timezone.utc)
    for k in K8S_VERSIONS:
        for parameter, name, arch, owner in AMI_FAMILIES:
            name = name.format(k=k)
            ami = Ami(
                ec2,
                random_ami_id(),
                name=name,
                description=f"EKS-like node image {name} (karpenter-rs e2e seed)",
                owner_id=owner,
                owner_alias="amazon",
                public=True,
                virtualization_type="hvm",
                architecture=arch,
                creation_date=created,
                hypervisor="xen",
                root_device_type="ebs",
                root_device_name="/dev/xvda",
                region_name=f"{region}a",
            )
            ec2.amis[ami.id] = ami
            # PutParameter refuses /aws/ names, as AWS does: append the version directly.
            ssm._parameters[parameter.format(k=k)].append(
                Parameter(
                    account_id=DEFAULT_ACCOUNT_ID,
                    name=parameter.format(k=k),
                    value=ami.id,
                    parameter_type="String",
                    description=None,
                    allowed_pattern=None,
                    keyid=None,
                    last_modified_date=created,
                    version=1,
                    data_type="text",
                )
            )


def release_ami(region, parameter):
    """Registers a copy of the image `parameter` points at, under a new release name, and
    appends a parameter version pointing at it; returns the new image id."""
    ec2 = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    ssm = ssm_backends[DEFAULT_ACCOUNT_ID][region]
    versions = ssm._parameters.get(parameter)
    if not versions:
        raise KeyError(f"no SSM parameter {parameter}")
    current = ec2.amis[versions[-1].value]
    release = len(versions) + 1
    ami = Ami(
        ec2,
        random_ami_id(),
        name=f"{current.name}-r{release}",
        description=f"{current.description} (release {release})",
        owner_id=current.owner_id,
        owner_alias="amazon",
        public=True,
        virtualization_type="hvm",
        architecture=current.architecture,
        creation_date=datetime.datetime.now(datetime.timezone.utc),
        hypervisor="xen",
        root_device_type="ebs",
        root_device_name=current.root_device_name,
        region_name=f"{region}a",
    )
    ec2.amis[ami.id] = ami
    versions.append(
        Parameter(
            account_id=DEFAULT_ACCOUNT_ID,
            name=parameter,
            value=ami.id,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=datetime.datetime.now(datetime.timezone.utc),
            version=release,
            data_type="text",
        )
    )
    log(f"released {ami.id} behind {parameter} (version {release})")
    return ami.id


def patch_fleet_security_groups(region):
    """CreateFleet launches with the launch template's security groups, as EC2 does.

    moto reads a fleet's groups from the template's `GroupSet` only, so instances launched from
    a template with `SecurityGroupIds` (Karpenter's) got none (on-demand) or the VPC's default
    group (spot), and every spot node looked drifted.
    """
    init = SpotFleetLaunchSpec.__init__

    def with_template_groups(self, *args, **kwargs):
        init(self, *args, **kwargs)
        spec = self.launch_template_spec
        if self.group_set or not spec:
            return
        ec2 = ec2_backends[DEFAULT_ACCOUNT_ID][region]
        template = ec2.get_launch_template(spec["LaunchTemplateId"])
        data = template.get_version(spec.get("Version", template.default_version_number)).data
        self.group_set = list(data.get("SecurityGroupIds", []))

    SpotFleetLaunchSpec.__init__ = with_template_groups


def spot_price(on_demand, instance_type, zone):
    """A stable spot price between 30 % and 50 % of on-demand, different per type and zone."""
    share = 0.30 + (zlib.crc32(f"{instance_type}/{zone}".encode()) % 1000) / 1000 * 0.20
    return on_demand * share


def patch_spot_price_history():
    """DescribeSpotPriceHistory answers prices derived from the on-demand list prices of the
    controller's catalog (moto answers $0.00001 for every type, so spot capacity all cost the
    same and spot consolidation had nothing to compare)."""
    with open(CATALOG) as f:
        on_demand = {t["name"]: t["on_demand_price"] for t in json.load(f)["instance_types"]}

    def describe_spot_price_history(self):
        types = self._get_param("InstanceTypes", [])
        offerings = self.ec2_backend.describe_spot_price_history(
            types, self._filters_from_querystring()
        )
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        history = [
            {
                "InstanceType": o["InstanceType"],
                "ProductDescription": "Linux/UNIX (Amazon VPC)",
                "SpotPrice": f"{spot_price(on_demand[o['InstanceType']], o['InstanceType'], o['Location']):.6f}",
                "AvailabilityZone": o["Location"],
                "Timestamp": now,
            }
            for o in offerings
            if o["InstanceType"] in on_demand
        ]
        return ActionResult({"SpotPriceHistory": history})

    SpotInstances.describe_spot_price_history = describe_spot_price_history


def client(service, endpoint, region):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


def tags(**pairs):
    return [{"Key": k, "Value": v} for k, v in pairs.items()]


def seed_account(endpoint, region, cluster):
    """Creates the account through the server's own API, as a user would; returns aws.json."""
    ec2 = client("ec2", endpoint, region)
    discovery = {"karpenter.sh/discovery": cluster}
    vpc = ec2.create_vpc(
        CidrBlock="10.0.0.0/16",
        TagSpecifications=[
            {"ResourceType": "vpc", "Tags": tags(Name=f"{cluster}-vpc")},
        ],
    )["Vpc"]["VpcId"]

    def private_subnet(suffix, cidr, name):
        zone = f"{region}{suffix}"
        subnet = ec2.create_subnet(
            VpcId=vpc,
            CidrBlock=cidr,
            AvailabilityZone=zone,
            TagSpecifications=[
                {
                    "ResourceType": "subnet",
                    "Tags": tags(Name=name, **discovery)
                    + tags(**{"kubernetes.io/role/internal-elb": "1"}),
                }
            ],
        )["Subnet"]
        return {"id": subnet["SubnetId"], "zone": zone, "cidr": cidr}

    suffix, cidr = SMALL_PRIVATE_SUBNET
    small = private_subnet(suffix, cidr, f"{cluster}-private-{region}{suffix}-small")
    # The big subnets first in aws.json: tests take subnets[0] and [1] as two zones.
    subnets = [
        private_subnet(suffix, cidr, f"{cluster}-private-{region}{suffix}")
        for suffix, cidr in PRIVATE_SUBNETS
    ] + [small]
    for suffix, cidr in PUBLIC_SUBNETS:
        zone = f"{region}{suffix}"
        ec2.create_subnet(
            VpcId=vpc,
            CidrBlock=cidr,
            AvailabilityZone=zone,
            TagSpecifications=[
                {
                    "ResourceType": "subnet",
                    "Tags": tags(Name=f"{cluster}-public-{zone}")
                    + tags(**{"kubernetes.io/role/elb": "1"}),
                }
            ],
        )
    sg = ec2.create_security_group(
        GroupName=f"{cluster}-node",
        Description=f"Nodes of {cluster}",
        VpcId=vpc,
        TagSpecifications=[
            {
                "ResourceType": "security-group",
                "Tags": tags(Name=f"{cluster}-node", **discovery),
            }
        ],
    )["GroupId"]
    queue_url = client("sqs", endpoint, region).create_queue(QueueName=cluster)["QueueUrl"]
    # The node role users create for Karpenter's nodes; EC2NodeClasses name it in `role`.
    client("iam", endpoint, region).create_role(
        RoleName=f"KarpenterNodeRole-{cluster}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    return {
        "endpoint": endpoint,
        "region": region,
        "cluster_name": cluster,
        "vpc_id": vpc,
        "subnets": subnets,
        "security_group_ids": [sg],
        "interruption_queue_name": cluster,
        "interruption_queue_url": queue_url,
        "pid": os.getpid(),
    }


def seed(endpoint, region, cluster):
    """Seeds the account with the same ids every time (at start and after each reset)."""
    # moto creates region backends lazily, or re-initialises existing ones eagerly on reset,
    # drawing ids (default VPC...) either way: fetch them first, then seed the id generator and
    # re-initialise them, so the draws after the seed are the same on every path.
    backends = [b[DEFAULT_ACCOUNT_ID][region] for b in (ec2_backends, ssm_backends, sqs_backends)]
    mock_random.seed(ID_SEED)
    for backend in backends:
        backend.reset()
    seed_amis_and_parameters(region)
    return seed_account(endpoint, region, cluster)


def smoke_check(endpoint, region):
    """Every seeded parameter resolves, through the API, to an image of the right architecture."""
    ssm = client("ssm", endpoint, region)
    ec2 = client("ec2", endpoint, region)
    expected = {}
    for k in K8S_VERSIONS:
        for parameter, name, arch, _ in AMI_FAMILIES:
            expected[parameter.format(k=k)] = (name.format(k=k), arch)
    names = list(expected)
    for start in range(0, len(names), 10):  # GetParameters takes at most 10 names
        batch = names[start : start + 10]
        got = ssm.get_parameters(Names=batch)
        if got["InvalidParameters"]:
            raise RuntimeError(f"SSM parameters missing: {got['InvalidParameters']}")
        ids = {p["Name"]: p["Value"] for p in got["Parameters"]}
        images = {
            i["ImageId"]: i for i in ec2.describe_images(ImageIds=list(ids.values()))["Images"]
        }
        for parameter, image_id in ids.items():
            name, arch = expected[parameter]
            image = images.get(image_id)
            if image is None or image["Name"] != name or image["Architecture"] != arch:
                raise RuntimeError(f"{parameter} -> {image_id} is not {name} ({arch}): {image}")


def write_state(state_dir, info):
    path = os.path.join(state_dir, "aws.json")
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)  # atomic: readers never see half a file
    return path


def remove_state_if_ours(state_dir):
    path = os.path.join(state_dir, "aws.json")
    try:
        with open(path) as f:
            if json.load(f).get("pid") != os.getpid():
                return
        os.remove(path)
    except (OSError, ValueError):
        pass


class Server(ThreadedMotoServer):
    """ThreadedMotoServer whose `POST /moto-api/reset` re-seeds the account after resetting."""

    def __init__(self, region, cluster):
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.region = region
        self.cluster = cluster
        self.expected = None  # aws.json content the re-seed must reproduce
        self.reset_lock = threading.Lock()

    def _server_entry(self):
        # Same as moto's, with the application wrapped.
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self._ip_address,
            self._port,
            self.wrap(app),
            True,
            request_handler=MotoRequestHandler,
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def wrap(self, app):
        def wrapped(environ, start_response):
            if (
                environ.get("PATH_INFO") == "/moto-api/reset"
                and environ.get("REQUEST_METHOD") == "POST"
                and self.expected is not None
            ):
                return self.reset(start_response)
            if (
                environ.get("PATH_INFO") == RELEASE_AMI_PATH
                and environ.get("REQUEST_METHOD") == "POST"
            ):
                return self.release_ami(environ, start_response)
            return app(environ, start_response)

        return wrapped

    def release_ami(self, environ, start_response):
        """Publishes a new image behind an SSM parameter, as EKS does with each AMI release."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with self.reset_lock:
                image_id = release_ami(self.region, body["parameter"])
            status, reply = "200 OK", {"image_id": image_id}
        except Exception as e:  # noqa: BLE001 - reported to the caller, who must see it
            log(f"release-ami failed: {e}")
            status, reply = "400 Bad Request", {"error": str(e)}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(reply).encode()]

    def reset(self, start_response):
        with self.reset_lock:
            try:
                moto_api_backend.reset()
                info = seed(self.expected["endpoint"], self.region, self.cluster)
                if info != self.expected:
                    raise RuntimeError(
                        f"re-seed gave different ids (were requests made during the reset?): "
                        f"{info} != {self.expected}"
                    )
                status, body = "200 OK", {"status": "ok", "reseeded": True}
            except Exception as e:  # noqa: BLE001 - reported to the caller, who must see it
                log(f"reset failed: {e}")
                status, body = "500 Internal Server Error", {"error": str(e)}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--cluster-name", required=True)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args()

    # Detach from the terminal of `cargo xtask aws up` (Ctrl-C there must not stop us).
    if os.getsid(0) != os.getpid():
        os.setsid()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    patch_fleet_security_groups(args.region)
    patch_spot_price_history()
    server = Server(args.region, args.cluster_name)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    log(f"moto {endpoint} (pid {os.getpid()}), seeding")
    try:
        info = seed(endpoint, args.region, args.cluster_name)
        smoke_check(endpoint, args.region)
    except Exception:
        server.stop()
        raise
    server.expected = info
    path = write_state(args.state_dir, info)
    log(f"wrote {path}")
    print("ready", flush=True)

    stop.wait()
    log("stopping")
    remove_state_if_ours(args.state_dir)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
