/**
 * The Standard Schema v1 interface (https://standardschema.dev), inlined as its authors
 * recommend so that the library needs no package for it: zod 4 (and 3.24+), valibot 1,
 * arktype 2 and others implement it. Types only; nothing here exists at run time.
 */

/** A schema any Standard Schema library can produce. */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  /** The Standard Schema properties. */
  readonly '~standard': StandardSchemaV1.Props<Input, Output>;
}

export declare namespace StandardSchemaV1 {
  /** The Standard Schema properties. */
  export interface Props<Input = unknown, Output = Input> {
    /** The version of the standard: 1. */
    readonly version: 1;
    /** The name of the schema library. */
    readonly vendor: string;
    /** Validates an unknown value. */
    readonly validate: (value: unknown, options?: Options | undefined) => Result<Output> | Promise<Result<Output>>;
    /** The inferred types (types only). */
    readonly types?: Types<Input, Output> | undefined;
  }
  /** Options for `validate`. */
  export interface Options {
    /** Library-specific parameters. */
    readonly libraryOptions?: Record<string, unknown> | undefined;
  }
  /** What `validate` returns. */
  export type Result<Output> = SuccessResult<Output> | FailureResult;
  /** A success: the value, and no issues. */
  export interface SuccessResult<Output> {
    /** The typed output value. */
    readonly value: Output;
    /** Falsy on success. */
    readonly issues?: undefined;
  }
  /** A failure: one or more issues. */
  export interface FailureResult {
    /** What is wrong. */
    readonly issues: ReadonlyArray<Issue>;
  }
  /** One problem with the value. */
  export interface Issue {
    /** The library's message. */
    readonly message: string;
    /** Where in the value, when known. */
    readonly path?: ReadonlyArray<PropertyKey | PathSegment> | undefined;
  }
  /** A path segment given as an object. */
  export interface PathSegment {
    /** The key of the segment. */
    readonly key: PropertyKey;
  }
  /** The input and output types of a schema. */
  export interface Types<Input = unknown, Output = Input> {
    /** What the schema accepts. */
    readonly input: Input;
    /** What validation yields. */
    readonly output: Output;
  }
  /** The input type of a schema. */
  export type InferInput<Schema extends StandardSchemaV1> = NonNullable<Schema['~standard']['types']>['input'];
  /** The output type of a schema. */
  export type InferOutput<Schema extends StandardSchemaV1> = NonNullable<Schema['~standard']['types']>['output'];
}
