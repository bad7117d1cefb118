// Allure 3's configuration for `make report` and `make nightly` (`allure generate --config allurerc.mjs`).
// RESULTS is the rig's results folder; ALLURE_RESULTS the allure results in it (RESULTS/allure-results).
// The history file lives beside the allure results, not in them: `--clean-alluredir` empties those every
// night, while each generated report appends its run to the history and reads the earlier ones from it
// (the History tab of a test, the trends). The categories are the ones the run wrote (categories.json:
// known firmware failures, firmware failures, unexpected passes, bench problems).
import { existsSync, readFileSync } from "node:fs";

const results = process.env.RESULTS ?? "results";
const allureResults = process.env.ALLURE_RESULTS ?? `${results}/allure-results`;
const categoriesFile = `${allureResults}/categories.json`;

export default {
  name: "rig: HIL matrix",
  output: `${results}/report`,
  historyPath: `${results}/allure-history.jsonl`,
  ...(existsSync(categoriesFile) ? { categories: JSON.parse(readFileSync(categoriesFile, "utf-8")) } : {}),
};
