"""Asset checks: the `nft_pipeline.quality` rules as Dagster check specs and results.

Checks run inside the asset's own step (declared with `check_specs`), so they work for every
partition; blocking ones stop downstream assets of the same run when they fail.
"""

import dagster as dg

from nft_pipeline.quality import QualityResult


def check_spec(asset: str, name: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name=name, asset=asset, description=description, blocking=blocking)


def check_result(spec: dg.AssetCheckSpec, result: QualityResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=spec.name,
        asset_key=spec.asset_key,
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if spec.blocking else dg.AssetCheckSeverity.WARN,
        metadata={k: dg.MetadataValue.json(v) if isinstance(v, dict) else v for k, v in result.numbers.items()},
    )
