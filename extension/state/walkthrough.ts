/** The walkthrough's ids (pure: the unit tests check them against package.json). */

/** The walkthrough's id as VS Code knows it: EXTENSION_ID#WALKTHROUGH_ID (package.json publisher.name, contributes.walkthroughs[0].id). */
export const WALKTHROUGH_ID = 'cloudlet-toolkit.cloudlet-toolkit#cloudlet.firstOverlay';

/** Success event -> the walkthrough step it completes (package.json walkthroughs steps). */
export const WALKTHROUGH_STEPS = { setup: 'setup', base: 'base', resumed: 'resume', built: 'build', synthesized: 'run' } as const;
