// The console's only way to put text on the screen: ink's Text with every string child
// passed through escapeText, so nothing an agent wrote (an intent, a reason, an error
// message, a payload string) reaches the operator's terminal as a control, escape or
// bidirectional character.
import { createElement as h, type ComponentProps, type ReactElement, type ReactNode } from 'react';
import { Text as InkText } from 'ink';
import { escapeText } from '../escape-text.js';

/** Ink's `Text`, its string children escaped. */
export function Text(props: ComponentProps<typeof InkText>): ReactElement {
  return h(InkText, { ...props, children: escaped(props.children) });
}

function escaped(node: ReactNode): ReactNode {
  if (typeof node === 'string') return escapeText(node);
  if (Array.isArray(node)) return node.map(escaped);
  return node;
}
