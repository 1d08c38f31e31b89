// The architecture table twice: web/src/model.ts's ARCH_RECIPES (through the built bundle) must be
// py/wgllm/model.py's _ARCH_RECIPES field for field (snake_case there, camelCase here), so that the
// two engines cannot drift apart on which architectures exist or what each one's layers do.

import { execFileSync } from "node:child_process";
import { expect, test } from "@playwright/test";
import { inPage, python } from "./helpers";
import { REPO } from "./paths";

const DUMP = [
  "import dataclasses, json",
  "from wgllm.model import _ARCH_RECIPES",
  "print(json.dumps({arch: dataclasses.asdict(r) for arch, r in _ARCH_RECIPES.items()}))",
].join("\n");

const camel = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

test("ARCH_RECIPES is Python's _ARCH_RECIPES, architecture by architecture and field by field", async ({ page }) => {
  const py: Record<string, Record<string, unknown>> = JSON.parse(execFileSync(python(), ["-c", DUMP], { cwd: REPO, encoding: "utf8" }));
  await page.goto("/");
  const got = await inPage(page, async (w) => ({ recipes: w.ARCH_RECIPES, supported: w.SUPPORTED_ARCHITECTURES }));
  const ts: Record<string, Record<string, unknown>> = got.recipes;
  expect(got.supported).toEqual(Object.keys(ts));
  expect(Object.keys(ts)).toEqual(Object.keys(py));
  expect(Object.keys(py)).toEqual(expect.arrayContaining(["qwen2", "qwen3"]));
  for (const [arch, recipe] of Object.entries(py)) {
    const want = Object.fromEntries(Object.entries(recipe).map(([k, v]) => [camel(k), v]));
    expect(ts[arch], arch).toEqual(want);
  }
});
