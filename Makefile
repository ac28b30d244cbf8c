# Builds for `sam build`, and the pinned tools they need.
#
# Every function in template.yaml has `Metadata: BuildMethod: makefile` and `ContextPath: .`,
# so `sam build` runs `make --makefile <this file> build-<LogicalId>` once per function, in a
# scratch copy of the function's CodeUri folder (functions/<name>: a Cargo.toml and a
# main.rs; SAM copies nothing else, so target/ is never copied), with ARTIFACTS_DIR set.
# Each build-<LogicalId> depends on one build of the five functions together: the AWS SDK is
# compiled once for all five, into this repository's target/, and the stamp keeps the later
# calls from running it again until a source file changes. Only the five deployed packages are
# built: not the `spotstep` CLI nor the examples (never deployed; each binary is one more
# link with LTO over the SDK).

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
export CARGO_TARGET_DIR := $(ROOT)/target
LAMBDA_DIR := $(CARGO_TARGET_DIR)/lambda
FUNCTIONS_BUILD := $(LAMBDA_DIR)/.functions-build
FUNCTIONS := launch wait-online send-step poll-result cleanup
SOURCES := $(ROOT)/Cargo.toml $(ROOT)/Cargo.lock \
	$(shell find $(ROOT)/src $(ROOT)/functions $(ROOT)/crates -name '*.rs' -o -name Cargo.toml)

# The pinned build tools (`make build-tools`): cargo-lambda cross-compiles for arm64 with zig.
BUILD_TOOLS := $(ROOT)/.local/build-tools
CARGO_LAMBDA_VERSION := 1.9.2
ZIGLANG_VERSION := 0.14.1
export PATH := $(BUILD_TOOLS)/bin:$(PATH)

.PHONY: build-tools build-LaunchFunction build-WaitOnlineFunction build-SendStepFunction \
	build-PollResultFunction build-CleanupFunction

$(FUNCTIONS_BUILD): $(SOURCES)
	cd $(ROOT) && cargo lambda build --release --arm64 $(addprefix -p ,$(FUNCTIONS))
	touch $@

build-LaunchFunction: $(FUNCTIONS_BUILD)
	cp $(LAMBDA_DIR)/launch/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-WaitOnlineFunction: $(FUNCTIONS_BUILD)
	cp $(LAMBDA_DIR)/wait-online/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-SendStepFunction: $(FUNCTIONS_BUILD)
	cp $(LAMBDA_DIR)/send-step/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-PollResultFunction: $(FUNCTIONS_BUILD)
	cp $(LAMBDA_DIR)/poll-result/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-CleanupFunction: $(FUNCTIONS_BUILD)
	cp $(LAMBDA_DIR)/cleanup/bootstrap $(ARTIFACTS_DIR)/bootstrap

build-tools:
	python3 -m venv $(BUILD_TOOLS)
	$(BUILD_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check \
		cargo-lambda==$(CARGO_LAMBDA_VERSION) ziglang==$(ZIGLANG_VERSION)
	rustup target add aarch64-unknown-linux-gnu
